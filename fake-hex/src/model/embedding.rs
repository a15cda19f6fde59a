//! Presigned embedding URLs: each is single-use and expires (`expiresIn` milliseconds, default
//! 15 s). The fake serves them at `/{subdomain}/embedded/{token}`: the first visit before expiry
//! gets a small HTML page, any later or late visit `410 Gone`.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

/// One presigned URL (the workspace keys them by their token).
#[derive(Clone, Debug)]
pub(crate) struct PresignedUrl {
    pub(crate) project_id: Uuid,
    pub(crate) expires_at: DateTime<Utc>,
    pub(crate) viewed: bool,
    /// `hexUserAttributes`, shown on the embedded page.
    pub(crate) user_attributes: Map<String, Value>,
    pub(crate) test_mode: bool,
}
