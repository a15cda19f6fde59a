//! Overload (§2, §5): a cap on requests served at once, past which hexbroker answers 503
//! `overloaded` with `Retry-After` at once instead of queueing; and a rate per API key, past
//! which it answers 429 `key_rate_limited`.
//!
//! `/healthz`, `/readyz` and `/metrics` are exempt from the cap: they cost next to nothing, and
//! a probe that failed under load would have the orchestrator restart (or stop routing to) a
//! replica that is busy but well, which makes an overload worse.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use uuid::Uuid;

use super::gcra::KeyedGcra;
use crate::error::{ApiError, Code};

/// Routes the in-flight cap never refuses.
const EXEMPT: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// Requests served at once, and the most allowed.
#[derive(Debug)]
pub struct InFlight {
    count: Arc<AtomicUsize>,
    max: usize,
}

impl InFlight {
    /// A cap of `max` requests at once.
    pub fn new(max: usize) -> Self {
        Self { count: Arc::default(), max }
    }

    /// A slot for one more request, or `None` when all are taken.
    pub fn try_enter(&self) -> Option<Slot> {
        let before = self.count.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(self.count.clone());
        (before < self.max).then_some(slot)
    }

    /// Admits a request for `path`: `Ok(None)` on a route the cap never refuses, a slot when one
    /// is free, else 503 `overloaded` with `Retry-After`, at once.
    pub fn admit(&self, path: &str) -> Result<Option<Slot>, ApiError> {
        if EXEMPT.contains(&path) {
            return Ok(None);
        }
        match self.try_enter() {
            Some(slot) => Ok(Some(slot)),
            None => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                Code::Overloaded,
                "hexbroker is serving as many requests as it may at once; try again shortly.",
            )
            .with_retry_after(Some(1))),
        }
    }

    /// Requests being served now.
    pub fn current(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

/// One request's place under the in-flight cap, given back when dropped. The middleware puts it
/// in the response's extensions, from which the listener moves it into the response body, so a
/// request counts until its body is sent. (`Clone` is required of extensions; a clone holds a
/// place of its own.)
#[derive(Debug)]
pub struct Slot(Arc<AtomicUsize>);

impl Clone for Slot {
    fn clone(&self) -> Self {
        self.0.fetch_add(1, Ordering::AcqRel);
        Self(self.0.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The per-key request rate (`HEXBROKER_KEY_RATE_LIMIT`).
#[derive(Debug)]
pub struct KeyRate {
    per_minute: u32,
    limiter: KeyedGcra<Uuid>,
}

impl KeyRate {
    /// `per_minute` requests a minute for each key, in bursts of up to a minute's worth.
    pub fn new(per_minute: u32) -> Self {
        Self { per_minute, limiter: KeyedGcra::new(per_minute, Duration::from_secs(60)) }
    }

    /// Counts one request of `key`, or refuses it (429 `key_rate_limited`).
    pub fn check(&self, key: Uuid) -> Result<(), KeyRateLimited> {
        self.limiter.take(&key, Instant::now()).map_err(|wait| {
            tracing::debug!(key_id = %key, "key over its request rate");
            KeyRateLimited { per_minute: self.per_minute, retry_after: super::retry_after_seconds(wait) }
        })
    }
}

/// An API key past its request rate (`HEXBROKER_KEY_RATE_LIMIT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the key is past its rate of {per_minute} requests a minute")]
pub struct KeyRateLimited {
    /// The key's rate.
    pub per_minute: u32,
    /// Whole seconds until it may make another request, at least one.
    pub retry_after: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_gives_places_back_when_requests_end() {
        let cap = InFlight::new(2);
        let a = cap.try_enter().unwrap();
        let b = cap.try_enter().unwrap();
        assert!(cap.try_enter().is_none(), "full");
        assert_eq!(cap.current(), 2, "a refused request holds no place");
        drop(a);
        let c = cap.try_enter().unwrap();
        drop((b, c));
        assert_eq!(cap.current(), 0);
    }

    #[test]
    fn a_key_over_its_rate_is_refused_with_a_wait() {
        let rate = KeyRate::new(2);
        let key = Uuid::now_v7();
        assert!(rate.check(key).is_ok() && rate.check(key).is_ok());
        let err = rate.check(key).unwrap_err();
        assert_eq!(err.per_minute, 2);
        assert!((1..=30).contains(&err.retry_after), "{err:?}");
        assert!(rate.check(Uuid::now_v7()).is_ok(), "other keys are not held back");
    }
}
