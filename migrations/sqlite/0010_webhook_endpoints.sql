-- Webhook endpoints per tenant (§13) and per-destination deliveries. An event (the outbox row,
-- 0004) now fans out, in the transaction that records it, to one `webhook_delivery` per matching
-- enabled endpoint of its tenant plus one for the deployment-wide HEXBROKER_WEBHOOK_URL
-- (`endpoint_id` null). Each delivery has its own attempts, backoff, lease and `dead` state; the
-- event's own state columns summarise its deliveries. Every attempt is kept in `webhook_attempt`.

create table webhook_endpoint (
    id                   blob primary key,
    tenant               text not null,
    url                  text not null,
    description          text,
    -- Comma-separated event types; empty: every type.
    event_types          text not null default '',
    enabled              integer not null default 1,
    -- The signing secret, sealed by the keyring (AES-GCM, bound to id and tenant).
    key_id               text not null,
    nonce                blob not null,
    ciphertext           blob not null,
    -- The secret before the last rotation, still signing until `previous_until`.
    previous_key_id      text,
    previous_nonce       blob,
    previous_ciphertext  blob,
    previous_until       text,
    created_at           text not null,
    updated_at           text not null
);

create index webhook_endpoint_by_tenant on webhook_endpoint (tenant, id);

create table webhook_delivery (
    id               blob primary key,
    event_id         blob not null references event (id) on delete cascade,
    tenant           text not null,
    -- Null: the deployment-wide HEXBROKER_WEBHOOK_URL.
    endpoint_id      blob references webhook_endpoint (id) on delete cascade,
    state            text not null default 'pending' check (state in ('pending', 'delivered', 'dead')),
    attempts         integer not null default 0,
    next_attempt_at  text not null,
    locked_until     text,
    queued_at        text not null,
    delivered_at     text,
    last_error       text
);

create index webhook_delivery_due on webhook_delivery (next_attempt_at) where state = 'pending';
create index webhook_delivery_by_event on webhook_delivery (event_id);
create index webhook_delivery_by_endpoint on webhook_delivery (endpoint_id, state);

create table webhook_attempt (
    id           blob primary key,
    delivery_id  blob not null references webhook_delivery (id) on delete cascade,
    endpoint_id  blob references webhook_endpoint (id) on delete cascade,
    event_id     blob not null,
    event_type   text not null,
    attempt      integer not null,
    at           text not null,
    status_code  integer,
    duration_ms  integer not null,
    error        text
);

create index webhook_attempt_by_endpoint on webhook_attempt (endpoint_id, id);
create index webhook_attempt_by_delivery on webhook_attempt (delivery_id);

-- Events recorded before endpoints existed were bound for the deployment-wide URL alone.
insert into webhook_delivery (id, event_id, tenant, endpoint_id, state, attempts, next_attempt_at,
                              locked_until, queued_at, delivered_at, last_error)
select id, id, tenant, null, state, attempts, next_attempt_at, locked_until, queued_at, delivered_at, last_error
from event;
