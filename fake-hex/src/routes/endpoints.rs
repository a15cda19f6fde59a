//! The endpoint table: for every operation in Hex's spec, its method and paths (as routed), its
//! error style, the scopes a workspace token needs, and its rate-limit group. The [`Caller`]
//! guard reads this table for every API request, so scopes, styles and limits live here and
//! nowhere else.
//!
//! How the columns were chosen:
//! - **style**: the schema of the operation's documented error responses (`TsoaErrorResponsePayload`
//!   → tsoa; `error.*` → coded; tsoa whose `details` is an array → tsoa with a detail list).
//! - **group**: the `hex-…` group the operation's description names. Descriptions of the older
//!   (tsoa) operations name none; those are in the default `hex-api` group, except
//!   IngestSemanticProject, whose description says 3 per minute. RunProject's `hex-run-kernel`
//!   is shared with CreateThread and ContinueThread, as the spec says.
//! - **scopes**: Hex's workspace-token scopes as its settings page lists them. Where Hex's
//!   documents are silent (marked *choice*), the closest scope.
//!
//! Paths are the routed templates: Hex's spec writes `/v1/threads/{threadId}/messages`, but the
//! router needs one parameter name per position, so it is `{id}` here as for the other thread
//! paths. `semantic-(projects|models)` in the spec is both prefixes.
//!
//! [`Caller`]: super::caller::Caller

use crate::errors::Style;
use crate::model::{RateGroup, Scope};

use RateGroup::{ChartImage, HexApi, HexApi30Rpm, RunKernel, SemanticIngest};
use Style::{Coded, Tsoa, TsoaDetailList};

/// The scopes an operation needs from a workspace token.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Needs {
    /// At least one of these.
    Any(&'static [Scope]),
    /// Every one of these.
    All(&'static [Scope]),
}

impl Needs {
    /// Whether `held` satisfies the need.
    pub(crate) fn met_by(self, held: &[Scope]) -> bool {
        match self {
            Needs::Any(scopes) => scopes.iter().any(|s| held.contains(s)),
            Needs::All(scopes) => scopes.iter().all(|s| held.contains(s)),
        }
    }

    /// For error messages: `ProjectsRead or ProjectsRun`, `ProjectsWrite and Collections`.
    pub(crate) fn describe(self) -> String {
        let (scopes, joiner) = match self {
            Needs::Any(scopes) => (scopes, " or "),
            Needs::All(scopes) => (scopes, " and "),
        };
        scopes.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(joiner)
    }
}

/// One operation of Hex's API.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// The spec's `operationId`.
    pub(crate) operation: &'static str,
    pub(crate) method: &'static str,
    /// Routed path templates after `/{subdomain}/api`.
    pub(crate) paths: &'static [&'static str],
    pub(crate) style: Style,
    pub(crate) needs: Needs,
    pub(crate) group: RateGroup,
}

const fn row(
    operation: &'static str,
    method: &'static str,
    paths: &'static [&'static str],
    style: Style,
    needs: Needs,
    group: RateGroup,
) -> Endpoint {
    Endpoint { operation, method, paths, style, needs, group }
}

const READ: Needs = Needs::Any(&[Scope::ProjectsRead]);
const WRITE: Needs = Needs::Any(&[Scope::ProjectsWrite]);
const RUN: Needs = Needs::Any(&[Scope::ProjectsRun]);
/// Reading runs accepts either scope: orchestrators that start runs with a run-only token also
/// poll them (*choice*).
const READ_RUNS: Needs = Needs::Any(&[Scope::ProjectsRead, Scope::ProjectsRun]);
const GROUPS: Needs = Needs::Any(&[Scope::Groups]);
const COLLECTIONS: Needs = Needs::Any(&[Scope::Collections]);
const CONNECTIONS: Needs = Needs::Any(&[Scope::DataConnections]);
const CELLS: Needs = Needs::Any(&[Scope::Cells]);
const GUIDES: Needs = Needs::Any(&[Scope::Guides]);
const SEMANTIC: Needs = Needs::Any(&[Scope::SemanticProjects]);
const THREADS: Needs = Needs::Any(&[Scope::Threads]);

const START_PATHS: &[&str] = &["/v1/projects/{projectId}/runs", "/v1/project/{projectId}/run"];
const LIST_PATHS: &[&str] = &["/v1/projects/{projectId}/runs", "/v1/project/{projectId}/runs"];
const RUN_PATHS: &[&str] = &["/v1/projects/{projectId}/runs/{runId}", "/v1/project/{projectId}/run/{runId}"];

/// Every operation. One row per `operationId`; see the module docs for how columns were chosen.
#[rustfmt::skip]
pub(crate) const ENDPOINTS: &[Endpoint] = &[
    // Users. DeactivateUser needs Users: write (Hex offers Users read + write).
    row("Me", "GET", &["/v1/users/me"], Coded, Needs::Any(&[Scope::UsersRead]), HexApi30Rpm),
    row("ListUsers", "GET", &["/v1/users"], Coded, Needs::Any(&[Scope::UsersRead]), HexApi30Rpm),
    row("DeactivateUser", "POST", &["/v1/users/{userId}/deactivate"], Coded, Needs::Any(&[Scope::UsersWrite]), HexApi30Rpm),
    // Projects. Export and embedding read a project (*choice*).
    row("ListProjects", "GET", &["/v1/projects"], Tsoa, READ, HexApi),
    row("CreateProject", "POST", &["/v1/projects"], Coded, WRITE, HexApi),
    row("GetProject", "GET", &["/v1/projects/{projectId}"], Coded, READ, HexApi),
    row("UpdateProject", "PATCH", &["/v1/projects/{projectId}"], Coded, WRITE, HexApi),
    row("GetQueriedTables", "GET", &["/v1/projects/{projectId}/queriedTables"], Tsoa, Needs::Any(&[Scope::ProjectsQueriedTables]), HexApi),
    row("ExportProject", "POST", &["/v1/projects/export"], Coded, READ, HexApi),
    row("CreatePresignedUrl", "POST", &["/v1/embedding/createPresignedUrl/{projectId}"], Tsoa, READ, HexApi),
    // Project sharing. The spec says collections sharing needs Collections as well as Projects: write.
    row("EditProjectSharingUsers", "PATCH", &["/v1/projects/{projectId}/sharing/users"], Coded, WRITE, HexApi30Rpm),
    row("EditProjectSharingGroups", "PATCH", &["/v1/projects/{projectId}/sharing/groups"], Coded, WRITE, HexApi),
    row("EditProjectSharingCollections", "PATCH", &["/v1/projects/{projectId}/sharing/collections"], Tsoa, Needs::All(&[Scope::ProjectsWrite, Scope::Collections]), HexApi),
    row("EditProjectSharingOrgAndPublic", "PATCH", &["/v1/projects/{projectId}/sharing/workspaceAndPublic"], Coded, WRITE, HexApi),
    // Runs, on Hex's plural paths and the legacy singular ones.
    row("RunProject", "POST", START_PATHS, Coded, RUN, RunKernel),
    row("GetProjectRuns", "GET", LIST_PATHS, Coded, READ_RUNS, HexApi),
    row("GetRunStatus", "GET", RUN_PATHS, Coded, READ_RUNS, HexApi),
    row("CancelRun", "DELETE", RUN_PATHS, Tsoa, RUN, HexApi),
    row("GetChartImageFromRun", "GET", &["/v1/projects/{projectId}/runs/{runId}/cells/{staticId}/image"], Coded, READ_RUNS, ChartImage),
    // Groups.
    row("ListGroups", "GET", &["/v1/groups"], Tsoa, GROUPS, HexApi),
    row("CreateGroup", "POST", &["/v1/groups"], Tsoa, GROUPS, HexApi),
    row("GetGroup", "GET", &["/v1/groups/{groupId}"], Tsoa, GROUPS, HexApi),
    row("EditGroup", "PATCH", &["/v1/groups/{groupId}"], Tsoa, GROUPS, HexApi),
    row("DeleteGroup", "DELETE", &["/v1/groups/{groupId}"], Tsoa, GROUPS, HexApi),
    // Collections.
    row("ListCollections", "GET", &["/v1/collections"], Tsoa, COLLECTIONS, HexApi),
    row("CreateCollection", "POST", &["/v1/collections"], Tsoa, COLLECTIONS, HexApi),
    row("GetCollection", "GET", &["/v1/collections/{collectionId}"], Tsoa, COLLECTIONS, HexApi),
    row("EditCollection", "PATCH", &["/v1/collections/{collectionId}"], Tsoa, COLLECTIONS, HexApi),
    // Data connections.
    row("ListDataConnections", "GET", &["/v1/data-connections"], Coded, CONNECTIONS, HexApi),
    row("CreateDataConnection", "POST", &["/v1/data-connections"], Tsoa, CONNECTIONS, HexApi),
    row("GetDataConnection", "GET", &["/v1/data-connections/{dataConnectionId}"], Coded, CONNECTIONS, HexApi),
    row("EditDataConnection", "PATCH", &["/v1/data-connections/{dataConnectionId}"], Tsoa, CONNECTIONS, HexApi),
    row("UpdateDataConnectionSchema", "PATCH", &["/v1/data-connections/{dataConnectionId}/schema"], TsoaDetailList, CONNECTIONS, HexApi),
    // Cells. GetCellOutput's description names hex-api, the others hex-api-30rpm.
    row("ListCells", "GET", &["/v1/cells"], Coded, CELLS, HexApi30Rpm),
    row("CreateCell", "POST", &["/v1/cells"], Coded, CELLS, HexApi30Rpm),
    row("GetCell", "GET", &["/v1/cells/{cellId}"], Coded, CELLS, HexApi30Rpm),
    row("UpdateCell", "PATCH", &["/v1/cells/{cellId}"], Coded, CELLS, HexApi30Rpm),
    row("DeleteCell", "DELETE", &["/v1/cells/{cellId}"], Coded, CELLS, HexApi30Rpm),
    row("GetCellOutput", "GET", &["/v1/cells/{cellId}/output"], Coded, CELLS, HexApi),
    row("GetChartImageFromLogic", "GET", &["/v1/cells/{cellId}/image"], Coded, CELLS, ChartImage),
    // Guides.
    row("ListDraftGuides", "GET", &["/v1/guides/draft/list"], Coded, GUIDES, HexApi30Rpm),
    row("UpsertGuideDraft", "PUT", &["/v1/guides/draft"], Tsoa, GUIDES, HexApi),
    row("PublishGuideDrafts", "POST", &["/v1/guides/publish"], Tsoa, GUIDES, HexApi),
    row("DeleteGuideDraft", "DELETE", &["/v1/guides/draft/{orgGuideFileId}"], Tsoa, GUIDES, HexApi),
    // Semantic projects, under both prefixes.
    row("IngestSemanticProject", "POST", &["/v1/semantic-projects/{semanticProjectId}/ingest", "/v1/semantic-models/{semanticProjectId}/ingest"], Tsoa, SEMANTIC, SemanticIngest),
    row("UpdateSemanticProject", "PATCH", &["/v1/semantic-projects/{semanticProjectId}", "/v1/semantic-models/{semanticProjectId}"], TsoaDetailList, SEMANTIC, HexApi),
    // Threads and topics (*choice*: a Threads scope of the fake's own).
    row("CreateThread", "POST", &["/v1/threads"], Coded, THREADS, RunKernel),
    row("ListThreads", "GET", &["/v1/threads"], Coded, THREADS, HexApi),
    row("GetThread", "GET", &["/v1/threads/{id}"], Coded, THREADS, HexApi),
    row("GetThreadMessages", "GET", &["/v1/threads/{id}/messages"], Coded, THREADS, HexApi),
    row("ContinueThread", "POST", &["/v1/threads/{id}/followup"], Coded, THREADS, RunKernel),
    row("ListTopics", "GET", &["/v1/context/topics"], Coded, THREADS, HexApi),
];

/// The operation served at `method` and routed path `path` (after `/{subdomain}/api`).
pub(crate) fn lookup(method: &str, path: &str) -> Option<&'static Endpoint> {
    ENDPOINTS.iter().find(|e| e.method == method && e.paths.contains(&path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_one_row_per_operation_and_each_route_once() {
        let mut operations: Vec<&str> = ENDPOINTS.iter().map(|e| e.operation).collect();
        operations.sort();
        operations.dedup();
        assert_eq!(operations.len(), 52, "Hex's spec has 52 operations");
        let mut routes: Vec<(&str, &str)> =
            ENDPOINTS.iter().flat_map(|e| e.paths.iter().map(move |p| (e.method, *p))).collect();
        let total = routes.len();
        routes.sort();
        routes.dedup();
        assert_eq!(routes.len(), total, "a (method, path) is served by one operation");
    }

    #[test]
    fn collections_sharing_needs_both_scopes() {
        let row = ENDPOINTS.iter().find(|e| e.operation == "EditProjectSharingCollections").unwrap();
        assert!(!row.needs.met_by(&[Scope::ProjectsWrite]));
        assert!(row.needs.met_by(&[Scope::ProjectsWrite, Scope::Collections]));
        assert_eq!(row.needs.describe(), "ProjectsWrite and Collections");
    }
}
