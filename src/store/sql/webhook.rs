//! The webhook tables: `webhook_endpoint` (tenants' endpoints), `webhook_delivery` (one per
//! event and destination) and `webhook_attempt` (each attempt's history row).

/// The columns of an [`Endpoint`](crate::events::endpoints::Endpoint).
macro_rules! endpoint_columns {
    () => {
        "id, tenant, url, description, event_types, enabled, created_at, updated_at"
    };
}

/// The columns of an [`EndpointSecrets`](crate::events::endpoints::EndpointSecrets).
macro_rules! secret_columns {
    () => {
        "id, tenant, url, enabled, key_id, nonce, ciphertext, previous_key_id, previous_nonce, \
         previous_ciphertext, previous_until"
    };
}

/// Stores an endpoint, made (and updated) at $10.
pub const INSERT_ENDPOINT: &str = concat!(
    "insert into webhook_endpoint (id, tenant, url, description, event_types, enabled, key_id, \
     nonce, ciphertext, created_at, updated_at) \
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) returning ",
    endpoint_columns!()
);

/// An endpoint of `tenant` ($1) by id ($2).
pub const ENDPOINT: &str =
    concat!("select ", endpoint_columns!(), " from webhook_endpoint where tenant = $1 and id = $2");

/// A page of `tenant`'s ($1) endpoints, newest first: before id $2, at most $3.
pub const LIST_ENDPOINTS: &str = concat!(
    "select ",
    endpoint_columns!(),
    " from webhook_endpoint where tenant = $1 and ($2 is null or id < $2) order by id desc limit $3"
);

/// The enabled endpoints of `tenant` ($1), with the event types each takes.
pub const ENABLED_ENDPOINTS: &str =
    "select id, event_types from webhook_endpoint where tenant = $1 and enabled";

/// Changes what is given: url $3, description ($5, if $4), event types $6, enabled $7, at $8.
pub const UPDATE_ENDPOINT: &str = concat!(
    "update webhook_endpoint set url = coalesce($3, url), \
     description = case when $4 then $5 else description end, \
     event_types = coalesce($6, event_types), enabled = coalesce($7, enabled), updated_at = $8 \
     where tenant = $1 and id = $2 returning ",
    endpoint_columns!()
);

/// A no-op write on endpoint $2 of `tenant` $1: it takes the row lock (Postgres) or the write
/// lock (SQLite) before anything is read.
pub const LOCK_ENDPOINT: &str =
    "update webhook_endpoint set updated_at = updated_at where tenant = $1 and id = $2";

/// Locks the events endpoint $1 has deliveries of (in the order `record_attempt` takes them).
pub const LOCK_ENDPOINT_EVENTS: &str =
    "update event set id = id where id in (select event_id from webhook_delivery where endpoint_id = $1)";

/// The events endpoint $1 has deliveries of.
pub const ENDPOINT_EVENTS: &str = "select distinct event_id from webhook_delivery where endpoint_id = $1";

/// Deletes endpoint $2 of `tenant` $1 (its deliveries and history go with it).
pub const DELETE_ENDPOINT: &str = "delete from webhook_endpoint where tenant = $1 and id = $2";

/// Makes the current secret the previous one until $3, and key $4, nonce $5, ciphertext $6 the
/// current one, at $7.
pub const ROTATE_SECRET: &str = concat!(
    "update webhook_endpoint set previous_key_id = key_id, previous_nonce = nonce, \
     previous_ciphertext = ciphertext, previous_until = $3, key_id = $4, nonce = $5, \
     ciphertext = $6, updated_at = $7 where tenant = $1 and id = $2 returning ",
    endpoint_columns!()
);

/// An endpoint with its sealed secrets, by id.
pub const SECRETS: &str = concat!("select ", secret_columns!(), " from webhook_endpoint where id = $1");

/// Endpoints with a secret not sealed by key $1.
pub const SECRETS_NOT_SEALED_BY: &str = concat!(
    "select ",
    secret_columns!(),
    " from webhook_endpoint where key_id <> $1 or previous_key_id <> $1 order by id"
);

/// Re-seals endpoint $1's secrets (current: key $3, nonce $4, ciphertext $5; previous, if given:
/// $6-$8) while it still holds what was read (current nonce $2, previous nonce $9).
pub const RESEAL_SECRETS: &str = "update webhook_endpoint set key_id = $3, nonce = $4, ciphertext = $5, \
     previous_key_id = coalesce($6, previous_key_id), previous_nonce = coalesce($7, previous_nonce), \
     previous_ciphertext = coalesce($8, previous_ciphertext) \
     where id = $1 and nonce = $2 and (previous_nonce is null or previous_nonce = $9)";

/// One pending delivery, due at once ($5).
pub const INSERT_DELIVERY: &str = "insert into webhook_delivery (id, event_id, tenant, endpoint_id, \
     state, attempts, next_attempt_at, queued_at) values ($1, $2, $3, $4, 'pending', 0, $5, $5)";

/// Claims due deliveries on Postgres: rows another replica is claiming are skipped.
pub const CLAIM_DELIVERIES_POSTGRES: &str =
    "update webhook_delivery set locked_until = $2, attempts = attempts + 1 where id in (select id from \
     webhook_delivery where state = 'pending' and next_attempt_at <= $1 and (locked_until is null or \
     locked_until <= $1) and ($4 or endpoint_id is not null) order by next_attempt_at limit $3 \
     for update skip locked) \
     returning id, event_id, endpoint_id, attempts, queued_at";

/// Claims due deliveries on SQLite, where one statement is one write: the condition is the claim.
pub const CLAIM_DELIVERIES_SQLITE: &str =
    "update webhook_delivery set locked_until = $2, attempts = attempts + 1 where id in (select id from \
     webhook_delivery where state = 'pending' and next_attempt_at <= $1 and (locked_until is null or \
     locked_until <= $1) and ($4 or endpoint_id is not null) order by next_attempt_at limit $3) \
     and state = 'pending' and (locked_until is null or locked_until <= $1) \
     returning id, event_id, endpoint_id, attempts, queued_at";

/// The fields of event $1 a delivery carries.
pub const DELIVERY_EVENT: &str = "select type, created_at, payload from event where id = $1";

/// Locks event $1's row.
pub const LOCK_EVENT: &str = "update event set id = id where id = $1";

/// Marks delivery $1 delivered at $2, if it is still pending.
pub const DELIVERED: &str = "update webhook_delivery set state = 'delivered', delivered_at = $2, \
     locked_until = null, last_error = null where id = $1 and state = 'pending'";

/// Marks delivery $1 failed: state $2 (`pending` to retry at $3, or `dead`), error $4; if it is
/// still pending.
pub const FAILED: &str = "update webhook_delivery set state = $2, \
     next_attempt_at = coalesce($3, next_attempt_at), locked_until = null, last_error = $4 \
     where id = $1 and state = 'pending'";

/// One attempt's history row.
pub const INSERT_ATTEMPT: &str = "insert into webhook_attempt (id, delivery_id, endpoint_id, event_id, \
     event_type, attempt, at, status_code, duration_ms, error) \
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// Holds endpoint $1's other pending deliveries (not leased at $3) until $2.
pub const HOLD_ENDPOINT: &str = "update webhook_delivery set next_attempt_at = $2 \
     where endpoint_id = $1 and state = 'pending' and next_attempt_at < $2 \
     and (locked_until is null or locked_until <= $3)";

/// Hands claimed delivery $1 back unattempted, due at $2.
pub const DEFER: &str = "update webhook_delivery set locked_until = null, attempts = attempts - 1, \
     next_attempt_at = $2 where id = $1 and state = 'pending' and attempts > 0";

/// When the next pending delivery falls due (the deployment-wide URL's too, if $1).
pub const NEXT_DUE: &str = "select coalesce(locked_until, next_attempt_at) as due from webhook_delivery \
     where state = 'pending' and ($1 or endpoint_id is not null) order by due limit 1";

/// A page of endpoint $1's attempts, newest first: before id $2, at most $3.
pub const LIST_ATTEMPTS: &str = "select id, event_id, event_type, attempt, at, status_code, \
     duration_ms, error from webhook_attempt where endpoint_id = $1 and ($2 is null or id < $2) \
     order by id desc limit $3";

/// Sets event $1's state columns from its deliveries, at $2.
pub const SUMMARISE_EVENT: &str = "update event set \
     state = case \
         when exists (select 1 from webhook_delivery d where d.event_id = event.id \
                      and d.state = 'pending') then 'pending' \
         when exists (select 1 from webhook_delivery d where d.event_id = event.id \
                      and d.state = 'dead') then 'dead' \
         else 'delivered' end, \
     attempts = coalesce((select max(d.attempts) from webhook_delivery d \
                          where d.event_id = event.id), attempts), \
     next_attempt_at = coalesce((select min(d.next_attempt_at) from webhook_delivery d \
                                 where d.event_id = event.id and d.state = 'pending'), next_attempt_at), \
     last_error = (select d.last_error from webhook_delivery d \
                   where d.event_id = event.id and d.last_error is not null \
                   order by d.attempts desc limit 1), \
     delivered_at = case when exists (select 1 from webhook_delivery d where d.event_id = event.id \
                                      and d.state <> 'delivered') then null else $2 end \
     where id = $1";
