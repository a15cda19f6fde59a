//! Cursor paging, as every list in the API does it: `limit` (1-200, default 50) rows, newest
//! first, and an opaque `next_cursor` (the last row's id, base64url) that continues after it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;
use uuid::Uuid;

use crate::error::{ApiError, Code, Result};

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 200;

/// A page of rows, and where the next one starts (`None` on the last page).
#[derive(Debug, Serialize)]
pub struct Page<T> {
    data: Vec<T>,
    next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Cuts `rows`, read with [`fetch`]`(limit)` rows, to `limit`, with a cursor after the last
    /// row kept when more remain.
    pub fn cut(mut rows: Vec<T>, limit: u32, id: impl Fn(&T) -> Uuid) -> Self {
        let next_cursor = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|row| encode_cursor(id(row)))
        } else {
            None
        };
        Self { data: rows, next_cursor }
    }

    /// The same page with each row turned into what the response shows.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { data: self.data.into_iter().map(f).collect(), next_cursor: self.next_cursor }
    }
}

/// The page size asked for, checked.
pub fn limit(limit: Option<u32>) -> Result<u32> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::unprocessable(Code::InvalidQuery, "limit must be from 1 to 200."));
    }
    Ok(limit)
}

/// How many rows to read for a page of `limit`: one more, to know whether another page follows.
pub fn fetch(limit: u32) -> u32 {
    limit.saturating_add(1)
}

/// The id a `cursor` given out by [`Page::cut`] continues after, if one was given.
pub fn cursor(cursor: Option<&str>) -> Result<Option<Uuid>> {
    cursor.map(decode_cursor).transpose()
}

/// The cursor that continues a page after the row with `id`.
fn encode_cursor(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

/// Reads a cursor this API gave out.
fn decode_cursor(cursor: &str) -> Result<Uuid> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| Uuid::from_slice(&bytes).ok())
        .ok_or_else(|| ApiError::unprocessable(Code::InvalidQuery, "cursor is not one this API gave out."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_as_the_id_it_was_made_from() {
        let id = Uuid::now_v7();
        assert_eq!(cursor(Some(&encode_cursor(id))).ok(), Some(Some(id)));
        assert_eq!(cursor(None).ok(), Some(None));
        assert!(cursor(Some("not a cursor")).is_err());
        assert!(cursor(Some(&URL_SAFE_NO_PAD.encode(b"short"))).is_err());
    }

    #[test]
    fn a_page_read_one_too_long_is_cut_and_continues_after_its_last_row() {
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let page = Page::cut(ids.clone(), 2, |id| *id);
        assert_eq!(page.data, ids[..2]);
        assert_eq!(page.next_cursor, Some(encode_cursor(ids[1])));
        let last = Page::cut(ids.clone(), 3, |id| *id).map(|id| id.to_string());
        assert_eq!(last.data.len(), 3);
        assert_eq!(last.next_cursor, None);
    }

    #[test]
    fn the_limit_is_from_1_to_200_and_50_by_default() {
        assert_eq!(limit(None).ok(), Some(50));
        assert_eq!(limit(Some(1)).ok(), Some(1));
        assert_eq!(limit(Some(200)).ok(), Some(200));
        assert!(limit(Some(0)).is_err());
        assert!(limit(Some(201)).is_err());
    }
}
