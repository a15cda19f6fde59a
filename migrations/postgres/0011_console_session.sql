-- Operator console sessions (§12): one row per signed-in browser. The cookie's secret is kept
-- only as its keyed hash; the session acts as the admin API key that signed in, in that key's
-- tenant, until it is idle too long, reaches its absolute expiry, is signed out (the row is
-- deleted), or the key stops being usable. Every replica reads the same row, so signing out
-- ends the session everywhere at once.

create table console_session (
    id            uuid primary key,
    tenant        text not null,
    key_id        uuid not null references api_key (id) on delete cascade,
    token_hash    bytea not null unique,
    created_at    timestamptz not null,
    last_seen_at  timestamptz not null,
    expires_at    timestamptz not null
);

create index console_session_by_expiry on console_session (expires_at);
