-- A connection on one of the operator's own Hex origins (HEXBROKER_HEX_HOSTS, Hex on its own
-- domain) records that origin, exactly as listed (`https://hex.mycorp.com`); null means the
-- origin comes from the HEXBROKER_HEX_URL template. A row with an origin is sealed as version 3,
-- which binds the origin into the token's associated data beside id, tenant and subdomain.
alter table connection add column hex_url text;
