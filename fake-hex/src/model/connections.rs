//! Data connections: their settings, their secrets (kept, never shown), sharing, and the
//! statuses set on their databases, schemas and tables.
//!
//! What a connection's schema holds is derived from the model: its database is the one named in
//! its details (`database`, BigQuery's `projectId`, Athena's and Trino's `catalog`), and its tables
//! are those its SQL cells query. UpdateDataConnectionSchema resolves names against that.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

/// What the fake knows of one connection type.
#[derive(Debug)]
pub(crate) struct ConnectionType {
    pub(crate) name: &'static str,
    /// Fields CreateDataConnection requires in `connectionDetails.<type>`; `None` when the API
    /// cannot create connections of this type (ClickHouse, in Hex's spec).
    pub(crate) required: Option<&'static [&'static str]>,
    /// Fields shown back (everything else, such as passwords and keys, is secret).
    pub(crate) readable: &'static [&'static str],
    /// The detail naming the database, if the type has one.
    pub(crate) database_field: Option<&'static str>,
}

/// Every connection type in Hex's spec.
pub(crate) const TYPES: &[ConnectionType] = &[
    ConnectionType {
        name: "athena",
        required: Some(&["secretAccessKey", "accessKeyId", "s3OutputPath", "port", "hostname"]),
        readable: &["accessKeyId", "workgroup", "catalog", "s3OutputPath", "port", "hostname"],
        database_field: Some("catalog"),
    },
    ConnectionType {
        name: "bigquery",
        required: Some(&["serviceAccountJsonConfig", "projectId"]),
        readable: &["enableStorageApi", "enableDriveAccess", "projectId"],
        database_field: Some("projectId"),
    },
    ConnectionType {
        name: "clickhouse",
        required: None,
        readable: &["username", "port", "hostname"],
        database_field: None,
    },
    ConnectionType {
        name: "databricks",
        required: Some(&["accessToken", "jdbcUrl"]),
        readable: &["jdbcUrl"],
        database_field: None,
    },
    ConnectionType {
        name: "postgres",
        required: Some(&["password", "username", "database", "port", "hostname"]),
        readable: &["username", "database", "port", "hostname"],
        database_field: Some("database"),
    },
    ConnectionType {
        name: "redshift",
        required: Some(&["password", "username", "database", "port", "host"]),
        readable: &["username", "database", "port", "host"],
        database_field: Some("database"),
    },
    ConnectionType {
        name: "snowflake",
        required: Some(&["passphrase", "privateKey", "username", "database", "warehouse", "accountName"]),
        readable: &["role", "username", "schema", "database", "warehouse", "accountName"],
        database_field: Some("database"),
    },
    ConnectionType {
        name: "trino",
        required: Some(&["username", "port", "hostname"]),
        readable: &["sessionProperties", "username", "schema", "catalog", "port", "hostname"],
        database_field: Some("catalog"),
    },
];

/// The type called `name`.
pub(crate) fn connection_type(name: &str) -> Option<&'static ConnectionType> {
    TYPES.iter().find(|t| t.name == name)
}

/// A data connection.
#[derive(Clone, Debug)]
pub(crate) struct DataConnection {
    pub(crate) id: Uuid,
    pub(crate) seq: u64,
    pub(crate) name: String,
    pub(crate) kind: &'static ConnectionType,
    pub(crate) description: Option<String>,
    /// Every detail given, secrets included.
    pub(crate) details: Map<String, Value>,
    pub(crate) connect_via_ssh: bool,
    pub(crate) include_magic: bool,
    pub(crate) allow_writeback_cells: bool,
    pub(crate) schema_filters: Option<Value>,
    pub(crate) schema_refresh_schedule: Option<Value>,
    pub(crate) schema_refresh_access: String,
    /// Workspace sharing: members, guests, public.
    pub(crate) members_access: String,
    pub(crate) guests_access: String,
    pub(crate) public_access: String,
    /// Group grants: (group id, access).
    pub(crate) groups: Vec<(Uuid, String)>,
    /// Statuses set through UpdateDataConnectionSchema: (type, name, status).
    pub(crate) statuses: Vec<(String, String, Option<String>)>,
    pub(crate) created_at: DateTime<Utc>,
}

impl DataConnection {
    /// The details without secrets, as `{"<type>": {…}}`; nulls are left out.
    pub(crate) fn readable_details(&self) -> Value {
        let shown: Map<String, Value> = self
            .details
            .iter()
            .filter(|(k, v)| self.kind.readable.contains(&k.as_str()) && !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut outer = Map::new();
        outer.insert(self.kind.name.to_owned(), Value::Object(shown));
        Value::Object(outer)
    }

    /// The database named in the details, if any.
    pub(crate) fn database(&self) -> Option<&str> {
        self.details.get(self.kind.database_field?)?.as_str()
    }

    /// Records a status, replacing an earlier one for the same object.
    pub(crate) fn set_status(&mut self, kind: &str, name: &str, status: Option<String>) {
        self.statuses.retain(|(k, n, _)| !(k == kind && n == name));
        self.statuses.push((kind.to_owned(), name.to_owned(), status));
    }
}

/// Why a schema object cannot take a status (the spec's `UpdateSchemaObjectErrorDetail.reason`).
pub(crate) type Refusal = &'static str;

/// Resolves a `DATABASE`, `SCHEMA` or `TABLE` name against a connection whose database is
/// `database` and whose queried tables are `tables`; returns the full name of the one object it
/// names.
pub(crate) fn resolve_schema_object(
    kind: &str,
    name: &str,
    database: Option<&str>,
    tables: &[String],
) -> Result<String, Refusal> {
    let parts: Vec<&str> = name.split('.').collect();
    let max_parts = match kind {
        "DATABASE" => 1,
        "SCHEMA" => 2,
        _ => 3,
    };
    if parts.len() > max_parts || parts.iter().any(|p| p.is_empty()) {
        return Err("invalid_name_format");
    }
    let candidates: Vec<String> = match kind {
        "DATABASE" => {
            let Some(database) = database else { return Err("database_not_supported") };
            vec![database.to_owned()]
        }
        "SCHEMA" => tables.iter().filter_map(|t| t.rsplit_once('.').map(|(s, _)| s.to_owned())).collect(),
        _ => tables.to_vec(),
    };
    let lower = name.to_lowercase();
    let mut matches: Vec<String> = candidates
        .into_iter()
        .filter(|c| {
            let c = c.to_lowercase();
            c == lower || c.ends_with(&format!(".{lower}"))
        })
        .collect();
    matches.sort();
    matches.dedup();
    match matches.len() {
        0 => Err("not_found"),
        1 => Ok(matches.remove(0)),
        _ => Err("ambiguous_name"),
    }
}

#[cfg(test)]
mod tests {
    use super::resolve_schema_object as resolve;

    #[test]
    fn schema_objects_resolve_by_dotted_suffix() {
        let tables = ["analytics.orders".to_owned(), "sales.orders".to_owned(), "sales.users".to_owned()];
        assert_eq!(resolve("TABLE", "users", Some("db"), &tables), Ok("sales.users".into()));
        assert_eq!(resolve("TABLE", "sales.orders", Some("db"), &tables), Ok("sales.orders".into()));
        assert_eq!(resolve("TABLE", "orders", Some("db"), &tables), Err("ambiguous_name"));
        assert_eq!(resolve("TABLE", "nope", Some("db"), &tables), Err("not_found"));
        assert_eq!(resolve("TABLE", "a.b.c.d", Some("db"), &tables), Err("invalid_name_format"));
        assert_eq!(resolve("SCHEMA", "sales", Some("db"), &tables), Ok("sales".into()));
        assert_eq!(resolve("DATABASE", "DB", Some("db"), &tables), Ok("db".into()));
        assert_eq!(resolve("DATABASE", "db", None, &tables), Err("database_not_supported"));
        assert_eq!(resolve("DATABASE", "a.b", Some("db"), &tables), Err("invalid_name_format"));
    }
}
