//! Semantic projects (Hex's semantic layer): named datasets and views that carry a status
//! (endorsements), and ingests that sync them.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A dataset or view of a semantic project and its status.
#[derive(Clone, Debug)]
pub(crate) struct SemanticObject {
    pub(crate) name: String,
    pub(crate) status: Option<String>,
}

/// A semantic project.
#[derive(Clone, Debug)]
pub(crate) struct SemanticProject {
    pub(crate) id: Uuid,
    pub(crate) name: String,
    pub(crate) datasets: Vec<SemanticObject>,
    pub(crate) views: Vec<SemanticObject>,
    /// Ingests that wrote (dry runs excluded).
    pub(crate) syncs: u32,
    pub(crate) last_synced_at: Option<DateTime<Utc>>,
}

impl SemanticProject {
    pub(crate) fn new(name: &str, datasets: &[&str], views: &[&str]) -> Self {
        let objects = |names: &[&str]| {
            names.iter().map(|n| SemanticObject { name: (*n).to_owned(), status: None }).collect()
        };
        SemanticProject {
            id: Uuid::new_v4(),
            name: name.to_owned(),
            datasets: objects(datasets),
            views: objects(views),
            syncs: 0,
            last_synced_at: None,
        }
    }

    /// The datasets (`DATASET`) or views (`VIEW`).
    pub(crate) fn objects_mut(&mut self, kind: &str) -> &mut Vec<SemanticObject> {
        if kind == "VIEW" {
            &mut self.views
        } else {
            &mut self.datasets
        }
    }
}
