//! Guides: Markdown files that steer Hex's agent, each with an optional draft and an optional
//! published version. Upserting writes drafts; publishing moves drafts to published; deleting a
//! draft drops it (and the guide, when it was never published).

use serde_json::Value;
use uuid::Uuid;

/// One guide file.
#[derive(Clone, Debug)]
pub(crate) struct Guide {
    pub(crate) id: Uuid,
    pub(crate) seq: u64,
    pub(crate) file_path: String,
    pub(crate) draft: Option<String>,
    pub(crate) published: Option<String>,
    /// Where the file came from (`{"source": "github", …}`), as given.
    pub(crate) external_source: Option<Value>,
}

impl Guide {
    /// The `source` of the guide's external source (`unknown` when none was given).
    pub(crate) fn source_name(&self) -> &str {
        self.external_source.as_ref().and_then(|s| s["source"].as_str()).unwrap_or("unknown")
    }
}
