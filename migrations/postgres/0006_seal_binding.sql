-- What a connection's sealed token binds as associated data: 1 = the connection id alone (the
-- earlier way), 2 = id, tenant and subdomain. Existing rows are version 1 until `hexbroker
-- reencrypt` re-seals them; new seals write 2.
alter table connection add column seal_version smallint not null default 1;
