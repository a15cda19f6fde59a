//! Cursor pagination shared by every list. A list is ordered first (newest first, by name, …);
//! then a page is cut around an opaque cursor that names the page's boundary item by its sequence
//! number (its creation order within the workspace). The boundary item itself is excluded, as in
//! Hex: `after` continues past the last item of a page, `before` goes back from the first.
//!
//! Cursors are tagged with the kind of list that made them, so a project cursor given to the users
//! list is refused, and a cursor whose item has since been deleted is refused too (the caller
//! starts over). Requests without a cursor start at the first page, or for lists that Hex shows
//! from their end (thread messages) at the last.

/// One page of items and the cursors around it.
#[derive(Debug)]
pub(crate) struct Page<T> {
    pub(crate) items: Vec<T>,
    /// Cursor for the next page, `None` on the last page.
    pub(crate) after: Option<String>,
    /// Cursor for the previous page, `None` on the first page.
    pub(crate) before: Option<String>,
}

/// What a caller asked for: a page size and at most one decoded cursor.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PageRequest {
    pub(crate) limit: usize,
    pub(crate) after: Option<u64>,
    pub(crate) before: Option<u64>,
}

/// Where a request without cursors starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Start {
    First,
    Last,
}

fn tag(kind: &str) -> String {
    format!("fakehex:{kind}:")
}

/// Encodes an item's position in a list of `kind` as an opaque cursor (hex of tagged text).
pub(crate) fn encode_cursor(kind: &str, seq: u64) -> String {
    format!("{}{seq}", tag(kind)).bytes().map(|b| format!("{b:02x}")).collect()
}

/// Decodes a cursor made by [`encode_cursor`] for the same `kind`; `None` for anything else.
pub(crate) fn decode_cursor(kind: &str, cursor: &str) -> Option<u64> {
    if cursor.len() % 2 != 0 || !cursor.is_ascii() {
        return None;
    }
    let bytes = (0..cursor.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&cursor[i..i + 2], 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    let text = String::from_utf8(bytes).ok()?;
    text.strip_prefix(&tag(kind))?.parse().ok()
}

/// Cuts one page out of `ordered`. `seq` gives an item's sequence number; `kind` tags the cursors.
/// Fails when a cursor names an item no longer in the list.
pub(crate) fn paginate<T>(
    ordered: Vec<T>,
    seq: impl Fn(&T) -> u64,
    kind: &str,
    request: PageRequest,
    start: Start,
) -> Result<Page<T>, String> {
    let len = ordered.len();
    let limit = request.limit;
    let position = |cursor: u64| {
        ordered
            .iter()
            .position(|item| seq(item) == cursor)
            .ok_or_else(|| "the cursor names an item that no longer exists".to_owned())
    };
    let (first, end) = match (request.after, request.before) {
        (Some(cursor), _) => {
            let first = position(cursor)? + 1;
            (first, (first + limit).min(len))
        }
        (None, Some(cursor)) => {
            let end = position(cursor)?;
            (end.saturating_sub(limit), end)
        }
        (None, None) => match start {
            Start::First => (0, limit.min(len)),
            Start::Last => (len.saturating_sub(limit), len),
        },
    };
    let items: Vec<T> = ordered.into_iter().skip(first).take(end - first).collect();
    let after = match items.last() {
        Some(last) if end < len => Some(encode_cursor(kind, seq(last))),
        _ => None,
    };
    let before = match items.first() {
        Some(head) if first > 0 => Some(encode_cursor(kind, seq(head))),
        _ => None,
    };
    Ok(Page { items, after, before })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(n: u64, limit: usize, after: Option<&Page<u64>>, before: Option<&Page<u64>>) -> Page<u64> {
        let newest_first: Vec<u64> = (1..=n).rev().collect();
        let request = PageRequest {
            limit,
            after: after.and_then(|p| decode_cursor("t", p.after.as_deref()?)),
            before: before.and_then(|p| decode_cursor("t", p.before.as_deref()?)),
        };
        paginate(newest_first, |s| *s, "t", request, Start::First).unwrap()
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage_and_other_lists() {
        assert_eq!(decode_cursor("project", &encode_cursor("project", 42)), Some(42));
        assert_eq!(decode_cursor("user", &encode_cursor("project", 42)), None);
        for bad in ["", "zz", "abc", "616263", "é"] {
            assert_eq!(decode_cursor("project", bad), None, "{bad:?}");
        }
    }

    #[test]
    fn pages_walk_forward_and_back() {
        let first = page(5, 2, None, None);
        assert_eq!(first.items, [5, 4]);
        assert!(first.before.is_none());
        let second = page(5, 2, Some(&first), None);
        assert_eq!(second.items, [3, 2]);
        let third = page(5, 2, Some(&second), None);
        assert_eq!(third.items, [1]);
        assert!(third.after.is_none());
        let back = page(5, 2, None, Some(&third));
        assert_eq!(back.items, [3, 2]);
    }

    #[test]
    fn a_list_shown_from_its_end_starts_with_the_last_page() {
        let page = paginate(
            vec![1u64, 2, 3, 4, 5],
            |s| *s,
            "m",
            PageRequest { limit: 2, ..Default::default() },
            Start::Last,
        )
        .unwrap();
        assert_eq!(page.items, [4, 5]);
        assert!(page.after.is_none());
        assert_eq!(decode_cursor("m", page.before.as_deref().unwrap()), Some(4));
    }

    #[test]
    fn a_cursor_for_a_missing_item_is_refused() {
        let request = PageRequest { limit: 2, after: Some(99), before: None };
        assert!(paginate(vec![1u64, 2], |s| *s, "t", request, Start::First).is_err());
    }
}
