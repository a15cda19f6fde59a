//! The network edge: what stands between a client's socket and the handlers. The listener with
//! its time limits and connection cap ([`server`]), the cap on requests in flight and the rate
//! per API key ([`overload`]). All state is in memory, per replica. (The allowance of connect
//! attempts that Hex refuses is connect policy: [`crate::connect`].)

pub(crate) mod gcra;
pub mod overload;
pub mod server;
pub mod workers;

use std::time::Duration;

use uuid::Uuid;

use crate::config::Config;
pub use overload::{InFlight, KeyRate, KeyRateLimited};
pub use server::{serve_with, ClientAddr};
pub use workers::serve_on_workers;

/// The edge's limits and their state, in `AppState`.
#[derive(Debug)]
pub struct Guards {
    /// `HEXBROKER_MAX_IN_FLIGHT`.
    pub in_flight: InFlight,
    /// `HEXBROKER_KEY_RATE_LIMIT`, when set.
    pub key_rate: Option<KeyRate>,
}

impl Guards {
    /// The limits `config` sets.
    pub fn new(config: &Config) -> Self {
        Self {
            in_flight: InFlight::new(config.max_in_flight),
            key_rate: config.key_rate_limit.map(KeyRate::new),
        }
    }

    /// Counts one request of API key `key` against its rate, if there is one.
    pub fn check_key_rate(&self, key: Uuid) -> Result<(), KeyRateLimited> {
        self.key_rate.as_ref().map_or(Ok(()), |rate| rate.check(key))
    }
}

/// Whole seconds for `Retry-After`, at least one.
pub(crate) fn retry_after_seconds(wait: Duration) -> u64 {
    wait.as_secs().saturating_add(u64::from(wait.subsec_nanos() > 0)).max(1)
}
