-- The event outbox (§8) and the audit trail (§10). Both are written in the same transaction as
-- the change they describe. Neither references `connection`: they outlive a deleted connection.

create table event (
    id               uuid primary key,
    tenant           text not null,
    type             text not null,
    connection_id    uuid not null,
    -- The connection as it was when the event happened (JSON; never its token).
    payload          jsonb not null,
    created_at       timestamptz not null,
    state            text not null default 'pending' check (state in ('pending', 'delivered', 'dead')),
    attempts         integer not null default 0,
    next_attempt_at  timestamptz not null,
    -- A claimed event belongs to one replica until its lease ends; a crashed replica's claim lapses.
    locked_until     timestamptz,
    -- When it was (re)queued: retries stop HEXBROKER_WEBHOOK_RETRY_FOR after this.
    queued_at        timestamptz not null,
    delivered_at     timestamptz,
    last_error       text
);

create index event_due on event (next_attempt_at) where state = 'pending';
create index event_by_tenant on event (tenant, id);
create index event_by_connection on event (tenant, connection_id, id);

create table audit_event (
    id             uuid primary key,
    tenant         text not null,
    created_at     timestamptz not null,
    actor_type     text not null,
    actor_id       text not null,
    actor_name     text,
    action         text not null,
    connection_id  uuid,
    outcome        text not null,
    detail         text,
    request_id     text,
    client_addr    text
);

create index audit_by_tenant on audit_event (tenant, id);
create index audit_by_connection on audit_event (tenant, connection_id, id);
create index audit_by_time on audit_event (created_at);
