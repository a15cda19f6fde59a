-- A caller's own X-Request-Id, kept beside hexbroker's request id when it has the contract's
-- shape (1 to 128 characters of [A-Za-z0-9._-]); null when the caller sent none or another.
alter table audit_event add column caller_request_id text;
