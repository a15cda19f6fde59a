-- A per-connection limit on calls proxied to Hex; null means the deployment's default.
alter table connection add column rate_limit_per_minute integer;
