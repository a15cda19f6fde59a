//! What a write does beyond its rows: the cached copies it makes stale, and the webhook delivery
//! it makes due.
//!
//! Every write runs in a [`Tx`], and says next to its SQL what it made stale
//! (`tx.stale(Stale::Key(id))`) or that it recorded an event (`tx.recorded_events()`). The
//! backend's `commit` then, in one place for every write:
//! - sends each notice to the other replicas with Postgres `NOTIFY`, inside the transaction
//!   (delivered at commit, so never lost to a crash between the two);
//! - commits;
//! - tells this replica's caches ([`Forget`]), before the write returns, and wakes the delivery
//!   worker.
//!
//! The backend also passes what the other replicas send on to the same caches (see
//! `Store::announce_to`). Revocation (key revoked, connection deleted, token replaced,
//! connection invalidated) so takes effect everywhere within a second; the caches' TTL is only
//! the safety net for a lost notification channel and for writes made by another process on
//! SQLite. The caches themselves live with what they hold (`auth::Callers`, `proxy::Targets`):
//! the store only names what went stale.

use std::sync::{Arc, OnceLock};

use uuid::Uuid;

/// What a write made stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// API key or connection key `id` (revoked).
    Key(Uuid),
    /// Connection `id` (changed, deleted, its token replaced), and with it its connection keys.
    Connection(Uuid),
    /// Anything: notices may have been missed.
    Everything,
}

impl Stale {
    /// A notice as the store sends it to the other replicas (`key:<id>`, `connection:<id>`);
    /// anything else is read as [`Stale::Everything`], the safe side.
    pub fn parse(message: &str) -> Self {
        match message.split_once(':').map(|(kind, id)| (kind, Uuid::parse_str(id))) {
            Some(("key", Ok(id))) => Stale::Key(id),
            Some(("connection", Ok(id))) => Stale::Connection(id),
            _ => Stale::Everything,
        }
    }

    /// The notice [`Stale::parse`] reads back.
    pub fn notice(&self) -> String {
        match self {
            Stale::Key(id) => format!("key:{id}"),
            Stale::Connection(id) => format!("connection:{id}"),
            Stale::Everything => "*".to_owned(),
        }
    }
}

/// Whatever holds copies of what the store keeps, and must drop them when told.
pub trait Forget: Send + Sync + 'static {
    /// Drops what `stale` names. Called after the commit, before the write returns.
    fn forget(&self, stale: Stale);
}

/// A write transaction with what its commit must announce.
pub(super) struct Tx<DB: sqlx::Database> {
    tx: sqlx::Transaction<'static, DB>,
    effects: Effects,
}

/// What a transaction's commit announces.
#[derive(Debug, Default)]
pub(super) struct Effects {
    /// Cached copies it made stale.
    pub stale: Vec<Stale>,
    /// Whether it recorded an event (or queued a delivery).
    pub events: bool,
}

impl<DB: sqlx::Database> Tx<DB> {
    pub fn new(tx: sqlx::Transaction<'static, DB>) -> Self {
        Self { tx, effects: Effects::default() }
    }

    /// This write makes `stale` stale: the other replicas are told at commit, this one's caches
    /// right after it.
    pub fn stale(&mut self, stale: Stale) {
        self.effects.stale.push(stale);
    }

    /// This write recorded an event or queued a delivery: every replica's delivery worker is
    /// woken at commit.
    pub fn recorded_events(&mut self) {
        self.effects.events = true;
    }

    /// The transaction to commit, and what to announce with it.
    pub fn into_parts(self) -> (sqlx::Transaction<'static, DB>, Effects) {
        (self.tx, self.effects)
    }
}

impl<DB: sqlx::Database> std::ops::Deref for Tx<DB> {
    type Target = DB::Connection;
    fn deref(&self) -> &DB::Connection {
        &self.tx
    }
}

impl<DB: sqlx::Database> std::ops::DerefMut for Tx<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        &mut self.tx
    }
}

/// Who hears about a backend's commits in this process: the delivery worker and the caches.
#[derive(Default)]
pub(super) struct Hooks {
    /// Woken when this process commits an event (and, on Postgres, when any replica does).
    pub wake: Arc<tokio::sync::Notify>,
    /// The caches, once [`Hooks::announce_to`] named them.
    forget: OnceLock<Arc<dyn Forget>>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks").field("forget", &self.forget.get().is_some()).finish_non_exhaustive()
    }
}

impl Hooks {
    /// Tells `forget` from now on; false (and nothing changes) when caches were named already.
    pub fn announce_to(&self, forget: Arc<dyn Forget>) -> bool {
        self.forget.set(forget).is_ok()
    }

    /// The caches, held weakly (for a listener task that must end with the store).
    pub fn forget_weak(&self) -> Option<std::sync::Weak<dyn Forget>> {
        self.forget.get().map(Arc::downgrade)
    }

    /// Tells this process's caches that `stale` went stale.
    pub fn forget(&self, stale: Stale) {
        if let Some(forget) = self.forget.get() {
            forget.forget(stale);
        }
    }

    /// After a commit: tells the caches, and wakes the delivery worker.
    pub fn committed(&self, effects: &Effects) {
        for stale in &effects.stale {
            self.forget(*stale);
        }
        if effects.events {
            self.wake.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_name_what_went_stale_and_anything_else_means_everything() {
        let id = Uuid::now_v7();
        assert_eq!(Stale::parse(&format!("key:{id}")), Stale::Key(id));
        assert_eq!(Stale::parse(&format!("connection:{id}")), Stale::Connection(id));
        assert_eq!(Stale::parse("connection:nope"), Stale::Everything);
        assert_eq!(Stale::parse(""), Stale::Everything);
        for stale in [Stale::Key(id), Stale::Connection(id), Stale::Everything] {
            assert_eq!(Stale::parse(&stale.notice()), stale);
        }
    }
}
