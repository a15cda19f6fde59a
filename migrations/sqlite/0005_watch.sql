-- The watchers' columns (src/watch): when each connection's token is next checked against Hex in
-- the background, which token the expiry warning was sent for (a new token may warn again), and
-- the last proxied call, kept to the minute.
alter table connection add column next_verify_at text;
alter table connection add column expiry_warned_for blob;
alter table connection add column last_used_at text;

-- Due checks are claimed in next_verify_at order; rows not yet scheduled (null) are found here too.
create index connection_verify_due on connection (next_verify_at);
-- Tokens about to expire (or past it) among active connections.
create index connection_expiry_due on connection (token_expires_at) where status = 'active';
