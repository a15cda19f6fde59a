-- Connect sessions: short-lived, single-use tokens for the browser connect flow. The token is
-- stored only as a keyed hash; `used_at` is set by one conditional update, so single use holds.
-- `used_at`, `used_origin` and `result_connection_id` record who connected what, when.
create table connect_session (
    id                    blob primary key,
    tenant                text not null,
    token_hash            blob not null unique,
    end_user_id           text not null,
    end_user_email        text,
    connection_id         blob references connection (id) on delete cascade,
    created_by_key        blob,
    expires_at            text not null,
    used_at               text,
    used_origin           text,
    result_connection_id  blob references connection (id) on delete set null,
    created_at            text not null
);
