//! One column of a batch as a Postgres array parameter, written in Postgres's binary array format
//! as the rows are read, so that binding it is one copy. sqlx's `Vec<T>` parameters encode the
//! same bytes element by element through its generic `Encode` (a length slot reserved, checked
//! and patched per element); for the request log's 15 columns per row that was the writer's
//! largest cost.
//!
//! The format (Postgres `array_send`): dimensions (1), a has-nulls flag, the element type's OID,
//! the length and lower bound (1) of the one dimension, then each element as a big-endian `i32`
//! length (−1 for NULL) and its bytes in the element type's binary format.

use chrono::{DateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo};
use sqlx::{Encode, Postgres, Type};
use uuid::Uuid;

/// Microseconds from the Unix epoch to Postgres's (2000-01-01T00:00:00Z).
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// An array parameter being filled, one element at a time.
#[derive(Debug)]
pub(super) struct PgArray {
    type_info: PgTypeInfo,
    element_oid: u32,
    len: i32,
    has_null: bool,
    data: Vec<u8>,
}

/// The element types the request log writes.
#[derive(Debug, Clone, Copy)]
pub(super) enum Element {
    Uuid,
    Text,
    Timestamptz,
    Int4,
    Int8,
}

impl Element {
    /// The element type's OID (fixed in Postgres's catalog) and its array's type.
    fn types(self) -> (u32, PgTypeInfo) {
        match self {
            Element::Uuid => (2950, <Vec<Uuid> as Type<Postgres>>::type_info()),
            Element::Text => (25, <Vec<String> as Type<Postgres>>::type_info()),
            Element::Timestamptz => (1184, <Vec<DateTime<Utc>> as Type<Postgres>>::type_info()),
            Element::Int4 => (23, <Vec<i32> as Type<Postgres>>::type_info()),
            Element::Int8 => (20, <Vec<i64> as Type<Postgres>>::type_info()),
        }
    }
}

impl PgArray {
    /// An empty array of `element`s, with room for `n` elements of about `width` bytes each.
    pub(super) fn new(element: Element, n: usize, width: usize) -> Self {
        let (element_oid, type_info) = element.types();
        let data = Vec::with_capacity(n.saturating_mul(width.saturating_add(4)));
        Self { type_info, element_oid, len: 0, has_null: false, data }
    }

    fn bytes(&mut self, bytes: &[u8]) {
        // Every value here is short (paths are cut at 2 KiB); a longer one could not be sent.
        let len = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
        self.data.extend_from_slice(&len.to_be_bytes());
        self.data.extend_from_slice(bytes);
        self.len = self.len.saturating_add(1);
    }

    /// Adds a NULL.
    pub(super) fn null(&mut self) {
        self.data.extend_from_slice(&(-1_i32).to_be_bytes());
        self.has_null = true;
        self.len = self.len.saturating_add(1);
    }

    /// Adds a `uuid`.
    pub(super) fn uuid(&mut self, value: Uuid) {
        self.bytes(value.as_bytes());
    }

    /// Adds a `text`.
    pub(super) fn text(&mut self, value: &str) {
        self.bytes(value.as_bytes());
    }

    /// Adds a `timestamptz` (microseconds from Postgres's epoch).
    pub(super) fn timestamptz(&mut self, value: DateTime<Utc>) {
        self.bytes(&value.timestamp_micros().saturating_sub(POSTGRES_EPOCH_MICROS).to_be_bytes());
    }

    /// Adds an `int4`.
    pub(super) fn int4(&mut self, value: i32) {
        self.bytes(&value.to_be_bytes());
    }

    /// Adds an `int8`.
    pub(super) fn int8(&mut self, value: i64) {
        self.bytes(&value.to_be_bytes());
    }

    /// Adds `value`, or NULL.
    pub(super) fn or_null<T>(&mut self, value: Option<T>, add: impl FnOnce(&mut Self, T)) {
        match value {
            Some(value) => add(self, value),
            None => self.null(),
        }
    }
}

impl Type<Postgres> for PgArray {
    fn type_info() -> PgTypeInfo {
        // Each array says its own type (`produces`); this is only a default.
        <Vec<String> as Type<Postgres>>::type_info()
    }
}

impl Encode<'_, Postgres> for PgArray {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        buf.extend_from_slice(&1_i32.to_be_bytes());
        buf.extend_from_slice(&i32::from(self.has_null).to_be_bytes());
        buf.extend_from_slice(&self.element_oid.to_be_bytes());
        buf.extend_from_slice(&self.len.to_be_bytes());
        buf.extend_from_slice(&1_i32.to_be_bytes());
        buf.extend_from_slice(&self.data);
        Ok(IsNull::No)
    }

    fn produces(&self) -> Option<PgTypeInfo> {
        Some(self.type_info.clone())
    }

    fn size_hint(&self) -> usize {
        self.data.len().saturating_add(20)
    }
}
