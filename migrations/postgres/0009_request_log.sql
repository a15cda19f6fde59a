-- The request log (§11): one row per proxied call, written in batches beside the hot path, and
-- hourly counts per connection (calls, errors, last error) kept by the same writer in the same
-- transaction, so that a connection's `calls_24h` is a sum of at most 25 rows, never a scan.
-- Neither references `connection`: the log outlives a deleted connection until it is pruned.
--
-- The id is a UUID v7 made from `at` (milliseconds), so that id order is time order: lists page
-- by id, `since`/`until` become id bounds, and pruning deletes by id range on the primary key.

create table request_log (
    id               uuid primary key,
    tenant           text not null,
    connection_id    uuid not null,
    at               timestamptz not null,
    method           text not null,
    path             text not null,
    status           integer not null,
    answered_by      text not null check (answered_by in ('hex', 'hexbroker')),
    code             text,
    duration_ms      bigint not null,
    hex_duration_ms  bigint,
    retries          integer not null,
    via              text not null,
    key_id           uuid,
    request_id       text
);

-- A connection's log, newest first (GET /v1/connections/{id}/requests), and the tenant's
-- (GET /v1/requests); a status filter on a connection (`429`, `5xx`) finds its rows directly.
create index request_log_by_connection on request_log (connection_id, id);
create index request_log_by_tenant on request_log (tenant, id);
create index request_log_by_status on request_log (connection_id, status, id);

create table request_count (
    connection_id  uuid not null,
    hour           timestamptz not null,
    calls          bigint not null,
    errors         bigint not null,
    last_error_at  timestamptz,
    primary key (connection_id, hour)
);

create index request_count_by_hour on request_count (hour);

-- GET /v1/connections?subdomain= (the console's workspace filter), newest first.
create index connection_by_subdomain on connection (tenant, subdomain, id);
