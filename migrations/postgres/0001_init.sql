-- hexbroker's first schema: sealed secrets, connections and API keys.

create table sealed_secret (
    name        text primary key,
    key_id      text not null,
    nonce       bytea not null,
    ciphertext  bytea not null,
    created_at  timestamptz not null default now()
);

create table connection (
    id                 uuid primary key,
    tenant             text not null,
    end_user_id        text not null,
    end_user_email     text,
    label              text,
    metadata           jsonb not null default '{}',
    subdomain          text not null,
    token_type         text not null,
    token_hint         text not null,
    token_fingerprint  bytea not null,
    key_id             text not null,
    nonce              bytea not null,
    ciphertext         bytea not null,
    hex_org_id         text,
    hex_user_email     text,
    token_expires_at   timestamptz,
    status             text not null default 'active' check (status in ('active', 'invalid', 'expired')),
    status_reason      text,
    last_verified_at   timestamptz,
    created_at         timestamptz not null,
    updated_at         timestamptz not null
);

-- One row per token, tenant, end user and workspace: a second identical connect finds the first.
create unique index connection_token_once on connection (tenant, end_user_id, subdomain, token_fingerprint);
create index connection_by_tenant on connection (tenant, id);
create index connection_by_end_user on connection (tenant, end_user_id, id);

create table api_key (
    id             uuid primary key,
    tenant         text not null,
    name           text not null,
    prefix         text not null,
    hash           bytea not null unique,
    scopes         text not null,
    connection_id  uuid references connection (id) on delete cascade,
    created_at     timestamptz not null,
    expires_at     timestamptz,
    revoked_at     timestamptz,
    last_used_at   timestamptz
);
