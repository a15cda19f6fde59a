//! The `event` outbox and the `audit_event` trail.

/// One audit entry.
pub const INSERT_AUDIT: &str = "insert into audit_event (id, tenant, created_at, actor_type, \
     actor_id, actor_name, action, connection_id, outcome, detail, request_id, client_addr, \
     caller_request_id) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

/// A page of `tenant`'s ($1) audit entries, newest first: connection $2, action $3, actor $4,
/// before id $5, at most $6.
pub const LIST_AUDIT: &str = "select id, created_at, actor_type, actor_id, actor_name, action, \
     connection_id, outcome, detail, request_id, caller_request_id, client_addr, tenant \
     from audit_event where tenant = $1 \
     and ($2 is null or connection_id = $2) and ($3 is null or action = $3) \
     and ($4 is null or actor_id = $4) and ($5 is null or id < $5) order by id desc limit $6";

/// One outbox row, due at once ($6).
pub const INSERT: &str = "insert into event (id, tenant, type, connection_id, payload, created_at, \
     state, attempts, next_attempt_at, queued_at) values ($1, $2, $3, $4, $5, $6, 'pending', 0, $6, $6)";

/// A page of `tenant`'s ($1) events, newest first (test events left out): type $2, connection
/// $3, state $4, before id $5, at most $6.
pub const LIST: &str = "select id, type, connection_id, created_at, state, attempts, next_attempt_at, \
     last_error from event where tenant = $1 and type <> 'webhook.test' and ($2 is null or type = $2) \
     and ($3 is null or connection_id = $3) and ($4 is null or state = $4) \
     and ($5 is null or id < $5) order by id desc limit $6";

/// Queues event $2 of `tenant` $1 again, due at $3.
pub const REQUEUE: &str = "update event set state = 'pending', attempts = 0, next_attempt_at = $3, \
     queued_at = $3, locked_until = null where tenant = $1 and id = $2 returning connection_id";

/// Queues each delivery of event $1 again, due at $2.
pub const REQUEUE_DELIVERIES: &str = "update webhook_delivery set state = 'pending', attempts = 0, \
     next_attempt_at = $2, queued_at = $2, locked_until = null, delivered_at = null \
     where event_id = $1";

/// Deletes audit entries made before $1.
pub const PRUNE_AUDIT: &str = "delete from audit_event where created_at < $1";

/// Deletes delivered events made before $1.
pub const PRUNE_DELIVERED: &str = "delete from event where state = 'delivered' and created_at < $1";
