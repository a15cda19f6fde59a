//! Projects and the cursor pagination of ListProjects (newest first, opaque `after`/`before`
//! cursors).

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A project in a workspace. Every fake project is published at `published_version`.
#[derive(Clone, Debug)]
pub(crate) struct Project {
    pub(crate) id: Uuid,
    /// Creation order within the workspace; the sort key behind cursors (creation times can tie).
    pub(crate) seq: u64,
    pub(crate) title: String,
    pub(crate) creator_email: String,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) published_version: u32,
}

/// One page of projects and the cursors around it.
pub(crate) struct Page<'a> {
    pub(crate) items: Vec<&'a Project>,
    /// Cursor for the next page, `None` on the last page.
    pub(crate) after: Option<String>,
    /// Cursor for the previous page, `None` on the first page.
    pub(crate) before: Option<String>,
}

const CURSOR_TAG: &str = "fakehex:project:";

/// Encodes a project's position as an opaque cursor (hex of a tagged sequence number).
pub(crate) fn encode_cursor(seq: u64) -> String {
    format!("{CURSOR_TAG}{seq}").bytes().map(|b| format!("{b:02x}")).collect()
}

/// Decodes a cursor made by [`encode_cursor`]; `None` for anything else.
pub(crate) fn decode_cursor(cursor: &str) -> Option<u64> {
    if cursor.len() % 2 != 0 || !cursor.is_ascii() {
        return None;
    }
    let bytes = (0..cursor.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&cursor[i..i + 2], 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    let text = String::from_utf8(bytes).ok()?;
    text.strip_prefix(CURSOR_TAG)?.parse().ok()
}

/// Pages through `projects` newest first. `after` and `before` are decoded cursors (sequence
/// numbers); a cursor names the item that bounds the page and is itself excluded.
pub(crate) fn page(projects: &[Project], limit: usize, after: Option<u64>, before: Option<u64>) -> Page<'_> {
    let mut ordered: Vec<&Project> = projects.iter().collect();
    ordered.sort_by_key(|p| std::cmp::Reverse(p.seq));
    let (start, end) = match (after, before) {
        (Some(cursor), _) => {
            let start = ordered.iter().take_while(|p| p.seq >= cursor).count();
            (start, (start + limit).min(ordered.len()))
        }
        (None, Some(cursor)) => {
            let end = ordered.iter().take_while(|p| p.seq > cursor).count();
            (end.saturating_sub(limit), end)
        }
        (None, None) => (0, limit.min(ordered.len())),
    };
    let items = ordered[start..end].to_vec();
    let after = match items.last() {
        Some(last) if end < ordered.len() => Some(encode_cursor(last.seq)),
        _ => None,
    };
    let before = match items.first() {
        Some(first) if start > 0 => Some(encode_cursor(first.seq)),
        _ => None,
    };
    Page { items, after, before }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn projects(n: u64) -> Vec<Project> {
        (1..=n)
            .map(|seq| Project {
                id: Uuid::new_v4(),
                seq,
                title: format!("p{seq}"),
                creator_email: "a@example.com".into(),
                created_at: Utc::now(),
                published_version: 1,
            })
            .collect()
    }

    fn seqs(page: &Page<'_>) -> Vec<u64> {
        page.items.iter().map(|p| p.seq).collect()
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        assert_eq!(decode_cursor(&encode_cursor(42)), Some(42));
        for bad in ["", "zz", "abc", "616263", "é"] {
            assert_eq!(decode_cursor(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn pages_walk_forward_and_back_newest_first() {
        let all = projects(5);
        let first = page(&all, 2, None, None);
        assert_eq!(seqs(&first), [5, 4]);
        assert!(first.before.is_none());
        let second = page(&all, 2, decode_cursor(first.after.as_deref().unwrap()), None);
        assert_eq!(seqs(&second), [3, 2]);
        let third = page(&all, 2, decode_cursor(second.after.as_deref().unwrap()), None);
        assert_eq!(seqs(&third), [1]);
        assert!(third.after.is_none());
        let back = page(&all, 2, None, decode_cursor(third.before.as_deref().unwrap()));
        assert_eq!(seqs(&back), [3, 2]);
    }
}
