//! One Hex workspace (`acme` of `acme.hex.tech`) and everything in it.

use std::collections::HashMap;

use uuid::Uuid;

use super::{
    tables_in, Cell, CellType, Collection, DataConnection, Group, Guide, PresignedUrl, Project, Role, Run,
    SemanticProject, Thread, Topic, User,
};
use crate::timestamp;

/// The project statuses a workspace offers (projects, semantic objects and schema objects take
/// these). Hex lets admins define their own; these are the fake's.
pub(crate) const STATUSES: [&str; 5] =
    ["Exploratory", "In development", "Published", "Endorsed", "Deprecated"];

/// One workspace.
#[derive(Debug)]
pub(crate) struct Workspace {
    pub(crate) org_id: Uuid,
    pub(crate) users: Vec<User>,
    pub(crate) projects: Vec<Project>,
    pub(crate) runs: Vec<Run>,
    /// In notebook order within each project.
    pub(crate) cells: Vec<Cell>,
    pub(crate) groups: Vec<Group>,
    pub(crate) collections: Vec<Collection>,
    pub(crate) connections: Vec<DataConnection>,
    pub(crate) threads: Vec<Thread>,
    pub(crate) topics: Vec<Topic>,
    pub(crate) guides: Vec<Guide>,
    pub(crate) semantic_projects: Vec<SemanticProject>,
    /// Keyed by token.
    pub(crate) presigned_urls: HashMap<String, PresignedUrl>,
    next_seq: u64,
}

impl Workspace {
    pub(crate) fn new() -> Self {
        Workspace {
            org_id: Uuid::new_v4(),
            users: Vec::new(),
            projects: Vec::new(),
            runs: Vec::new(),
            cells: Vec::new(),
            groups: Vec::new(),
            collections: Vec::new(),
            connections: Vec::new(),
            threads: Vec::new(),
            topics: Vec::new(),
            guides: Vec::new(),
            semantic_projects: Vec::new(),
            presigned_urls: HashMap::new(),
            next_seq: 1,
        }
    }

    /// The next sequence number: creation order across everything in the workspace.
    pub(crate) fn next_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// The user with this email for a token: created if needed, and signed in now. The
    /// workspace's first user is its admin (someone had to create it); later users are editors.
    pub(crate) fn user_for(&mut self, email: &str, name: Option<String>) -> Uuid {
        let id = self.add_user(email, name);
        if let Some(user) = self.users.iter_mut().find(|u| u.id == id) {
            user.last_login = Some(timestamp::now());
        }
        id
    }

    /// The user with this email, created (never signed in) if needed; a given name replaces the
    /// stored one.
    pub(crate) fn add_user(&mut self, email: &str, name: Option<String>) -> Uuid {
        if let Some(user) = self.users.iter_mut().find(|u| u.email == email) {
            if name.is_some() {
                user.name = name;
            }
            return user.id;
        }
        let role = if self.users.is_empty() { Role::Admin } else { Role::Editor };
        let id = Uuid::new_v4();
        let seq = self.next_seq();
        self.users.push(User {
            id,
            seq,
            email: email.to_owned(),
            name,
            role,
            last_login: None,
            deactivated: false,
        });
        id
    }

    /// An active user.
    pub(crate) fn active_user(&self, id: Uuid) -> Option<&User> {
        self.users.iter().find(|u| u.id == id && u.active())
    }

    /// The email of the workspace's first user, or of a placeholder admin when nobody has a token
    /// yet.
    fn first_email(&self, subdomain: &str) -> String {
        self.users
            .first()
            .map(|u| u.email.clone())
            .unwrap_or_else(|| format!("admin@{subdomain}.example.com"))
    }

    /// Adds a published project, created by the workspace's first user.
    pub(crate) fn add_project(&mut self, subdomain: &str, title: &str) -> Uuid {
        let creator = self.first_email(subdomain);
        self.push_project(title, creator, true)
    }

    /// Adds a draft (never published) project.
    pub(crate) fn push_project(&mut self, title: &str, creator_email: String, published: bool) -> Uuid {
        let seq = self.next_seq();
        let project = Project::new(seq, title, creator_email, timestamp::now(), published);
        let id = project.id;
        self.projects.push(project);
        id
    }

    pub(crate) fn project(&self, id: Uuid) -> Option<&Project> {
        self.projects.iter().find(|p| p.id == id)
    }

    pub(crate) fn project_mut(&mut self, id: Uuid) -> Option<&mut Project> {
        self.projects.iter_mut().find(|p| p.id == id)
    }

    /// Marks a project edited now.
    pub(crate) fn touch_project(&mut self, id: Uuid) {
        if let Some(project) = self.project_mut(id) {
            project.edited_at = timestamp::now();
        }
    }

    /// Adds a chart cell at the end of a project; `None` if there is no such project.
    pub(crate) fn add_chart_cell(&mut self, project_id: Uuid, title: &str) -> Option<&Cell> {
        self.project(project_id)?;
        let seq = self.next_seq();
        self.cells.push(Cell {
            id: Uuid::new_v4(),
            static_id: Uuid::new_v4(),
            seq,
            project_id,
            cell_type: CellType::Chart,
            label: Some(title.to_owned()),
            source: String::new(),
            output_dataframe: None,
            data_connection_id: None,
            dataframe_sql: false,
        });
        self.touch_project(project_id);
        self.cells.last()
    }

    /// A cell by id or static id.
    pub(crate) fn cell(&self, key: Uuid) -> Option<&Cell> {
        self.cells.iter().find(|c| c.is(key))
    }

    /// The tables a project's SQL cells query: (connection id, table name), without repeats.
    pub(crate) fn queried_tables(&self, project_id: Uuid) -> Vec<(Uuid, String)> {
        let mut tables: Vec<(Uuid, String)> = Vec::new();
        for cell in self.cells.iter().filter(|c| c.project_id == project_id && c.cell_type == CellType::Sql) {
            let Some(connection) = cell.data_connection_id else { continue };
            for table in tables_in(&cell.source) {
                if !tables.contains(&(connection, table.clone())) {
                    tables.push((connection, table));
                }
            }
        }
        tables
    }

    /// The tables any SQL cell queries through a connection.
    pub(crate) fn connection_tables(&self, connection_id: Uuid) -> Vec<String> {
        let mut tables: Vec<String> = self
            .cells
            .iter()
            .filter(|c| c.cell_type == CellType::Sql && c.data_connection_id == Some(connection_id))
            .flat_map(|c| tables_in(&c.source))
            .collect();
        tables.sort();
        tables.dedup();
        tables
    }

    /// Whether `status` is one of the workspace's statuses.
    pub(crate) fn is_status(status: &str) -> bool {
        STATUSES.contains(&status)
    }
}
