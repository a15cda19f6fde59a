//! Projects: their metadata, status, publication and sharing.
//!
//! Projects added through [`crate::FakeHex::add_project`] are published (version 1, status
//! `Published`); projects made through CreateProject are drafts that were never published, so they
//! cannot be run or embedded until something publishes them.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// An access level on a project, as Hex spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    None,
    AppOnly,
    CanView,
    CanEdit,
    /// `FULL_ACCESS`.
    Full,
}

impl Access {
    const ALL: [Access; 5] = [Access::None, Access::AppOnly, Access::CanView, Access::CanEdit, Access::Full];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Access::None => "NONE",
            Access::AppOnly => "APP_ONLY",
            Access::CanView => "CAN_VIEW",
            Access::CanEdit => "CAN_EDIT",
            Access::Full => "FULL_ACCESS",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Access> {
        Access::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// Who may see a project besides its creator. `NONE` grants are removed rather than kept.
#[derive(Clone, Debug)]
pub(crate) struct Sharing {
    pub(crate) users: Vec<(Uuid, Access)>,
    pub(crate) groups: Vec<(Uuid, Access)>,
    pub(crate) collections: Vec<(Uuid, Access)>,
    pub(crate) workspace: Access,
    pub(crate) public_web: Access,
}

impl Default for Sharing {
    fn default() -> Self {
        Sharing {
            users: Vec::new(),
            groups: Vec::new(),
            collections: Vec::new(),
            workspace: Access::CanView,
            public_web: Access::None,
        }
    }
}

/// Sets (or with `NONE` removes) the grant for `id` in `grants`.
pub(crate) fn upsert_grant(grants: &mut Vec<(Uuid, Access)>, id: Uuid, access: Access) {
    grants.retain(|(existing, _)| *existing != id);
    if access != Access::None {
        grants.push((id, access));
    }
}

/// A project in a workspace.
#[derive(Clone, Debug)]
pub(crate) struct Project {
    pub(crate) id: Uuid,
    /// Creation order within the workspace; the key behind cursors (creation times can tie).
    pub(crate) seq: u64,
    pub(crate) title: String,
    pub(crate) description: Option<String>,
    pub(crate) creator_email: String,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) edited_at: DateTime<Utc>,
    /// The latest published version; 0 for a project never published.
    pub(crate) published_version: u32,
    pub(crate) published_at: Option<DateTime<Utc>>,
    /// The status label (one of the workspace's statuses), if any.
    pub(crate) status: Option<String>,
    pub(crate) sharing: Sharing,
    /// The run id of the draft notebook session, which cell outputs report.
    pub(crate) session_run_id: Uuid,
}

impl Project {
    /// A new project, published at version 1 when `published`.
    pub(crate) fn new(
        seq: u64,
        title: &str,
        creator_email: String,
        now: DateTime<Utc>,
        published: bool,
    ) -> Self {
        Project {
            id: Uuid::new_v4(),
            seq,
            title: title.to_owned(),
            description: None,
            creator_email,
            created_at: now,
            edited_at: now,
            published_version: u32::from(published),
            published_at: published.then_some(now),
            status: published.then(|| "Published".to_owned()),
            sharing: Sharing::default(),
            session_run_id: Uuid::new_v4(),
        }
    }

    pub(crate) fn is_published(&self) -> bool {
        self.published_version > 0
    }
}
