-- hexbroker's first schema: sealed secrets, connections and API keys.
-- Ids are 16-byte blobs (uuid), timestamps RFC 3339 text, metadata JSON text.

create table sealed_secret (
    name        text primary key,
    key_id      text not null,
    nonce       blob not null,
    ciphertext  blob not null,
    created_at  text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

create table connection (
    id                 blob primary key,
    tenant             text not null,
    end_user_id        text not null,
    end_user_email     text,
    label              text,
    metadata           text not null default '{}',
    subdomain          text not null,
    token_type         text not null,
    token_hint         text not null,
    token_fingerprint  blob not null,
    key_id             text not null,
    nonce              blob not null,
    ciphertext         blob not null,
    hex_org_id         text,
    hex_user_email     text,
    token_expires_at   text,
    status             text not null default 'active' check (status in ('active', 'invalid', 'expired')),
    status_reason      text,
    last_verified_at   text,
    created_at         text not null,
    updated_at         text not null
);

-- One row per token, tenant, end user and workspace: a second identical connect finds the first.
create unique index connection_token_once on connection (tenant, end_user_id, subdomain, token_fingerprint);
create index connection_by_tenant on connection (tenant, id);
create index connection_by_end_user on connection (tenant, end_user_id, id);

create table api_key (
    id             blob primary key,
    tenant         text not null,
    name           text not null,
    prefix         text not null,
    hash           blob not null unique,
    scopes         text not null,
    connection_id  blob references connection (id) on delete cascade,
    created_at     text not null,
    expires_at     text,
    revoked_at     text,
    last_used_at   text
);
