//! The bound on calls in flight to each Hex origin (one workspace's subdomain). hyper-util's
//! pooled client has no per-host cap, so one workspace that hangs could hold every connection and
//! task the broker has; with this bound it holds at most its own share, and calls to the other
//! workspaces go on untouched. A call takes a slot before it is sent and keeps it until the
//! response body ends or is dropped. Past the bound a call waits briefly for a slot, then gets a
//! fast 503 `workspace_busy` instead of queueing behind the stuck ones.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Origins tracked before idle ones (no call in flight) are dropped; busy ones are always kept,
/// so the map stays at most this size plus the origins with a call in flight.
const PRUNE_AT: usize = 10_000;

/// Calls in flight by origin, each under the same bound.
#[derive(Debug)]
pub struct Origins {
    max: u32,
    wait: Duration,
    slots: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// A call's slot under its origin's bound; freed when dropped.
#[derive(Debug)]
pub struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

/// No slot came free within the wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl Origins {
    /// At most `max` calls in flight to each origin (at least 1); a call past it waits up to
    /// `wait` for a slot.
    pub fn new(max: u32, wait: Duration) -> Self {
        Self { max: max.max(1), wait, slots: Mutex::default() }
    }

    /// The bound of the workspace origin `origin` (`scheme://authority[/base]`, compared without
    /// case), for a prepared target to keep: taking a slot through it then costs no lookup, no
    /// lock and no allocation.
    pub fn slots_for(&self, origin: &str) -> OriginSlots {
        let key = origin.trim_end_matches('/').to_ascii_lowercase();
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if slots.len() >= PRUNE_AT && !slots.contains_key(&key) {
            let max = self.max as usize;
            slots.retain(|_, s| Arc::strong_count(s) > 1 || s.available_permits() < max);
        }
        let semaphore =
            Arc::clone(slots.entry(key).or_insert_with(|| Arc::new(Semaphore::new(self.max as usize))));
        OriginSlots { semaphore, wait: self.wait }
    }
}

/// One origin's bound on calls in flight.
#[derive(Debug, Clone)]
pub struct OriginSlots {
    semaphore: Arc<Semaphore>,
    wait: Duration,
}

impl OriginSlots {
    /// A slot, at once if one is free, else within the wait; past it, [`Busy`].
    pub async fn acquire(&self) -> Result<Slot, Busy> {
        if let Ok(permit) = Arc::clone(&self.semaphore).try_acquire_owned() {
            return Ok(Slot(permit));
        }
        match tokio::time::timeout(self.wait, Arc::clone(&self.semaphore).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Slot(permit)),
            _ => Err(Busy),
        }
    }
}

/// `body` carrying `slot` until it ends or is dropped.
pub fn hold(slot: Slot, body: Body) -> Body {
    Body::new(Held { body, slot: Some(slot) })
}

struct Held {
    body: Body,
    slot: Option<Slot>,
}

impl http_body::Body for Held {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let frame = std::pin::Pin::new(&mut this.body).poll_frame(cx);
        if matches!(frame, std::task::Poll::Ready(None | Some(Err(_)))) || this.body.is_end_stream() {
            this.slot = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn take(origins: &Origins, origin: &str) -> Result<Slot, Busy> {
        origins.slots_for(origin).acquire().await
    }

    #[tokio::test]
    async fn a_full_origin_answers_busy_and_leaves_the_others_alone() {
        let origins = Origins::new(2, Duration::from_millis(20));
        let a = take(&origins, "http://a.hex.test").await.unwrap();
        let _b = take(&origins, "http://A.hex.test/").await.unwrap();
        assert_eq!(take(&origins, "http://a.hex.test").await.unwrap_err(), Busy);
        assert!(take(&origins, "http://b.hex.test").await.is_ok());
        drop(a);
        assert!(take(&origins, "http://a.hex.test").await.is_ok());
    }

    #[tokio::test]
    async fn the_slot_is_freed_when_the_body_ends_or_is_dropped() {
        let origins = Origins::new(1, Duration::from_millis(20));
        let slot = take(&origins, "http://a.hex.test/").await.unwrap();
        let body = hold(slot, Body::from("hello"));
        assert!(take(&origins, "http://a.hex.test/").await.is_err());
        assert_eq!(body.collect().await.unwrap().to_bytes(), "hello");
        let slot = take(&origins, "http://a.hex.test/").await.unwrap();
        let body = hold(slot, Body::from("unread"));
        assert!(take(&origins, "http://a.hex.test/").await.is_err());
        drop(body);
        assert!(take(&origins, "http://a.hex.test/").await.is_ok());
    }

    #[tokio::test]
    async fn a_waiting_call_gets_a_slot_freed_within_the_wait() {
        let origins = Arc::new(Origins::new(1, Duration::from_secs(5)));
        let slot = take(&origins, "http://a.hex.test/").await.unwrap();
        let waiter = {
            let origins = Arc::clone(&origins);
            tokio::spawn(async move { take(&origins, "http://a.hex.test/").await.is_ok() })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(slot);
        assert!(waiter.await.unwrap());
    }
}
