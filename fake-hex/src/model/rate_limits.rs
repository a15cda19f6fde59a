//! Per-token rate limits, by the groups Hex's spec names in its endpoint descriptions.
//!
//! Each (token, group) pair keeps a log of the instants of its admitted requests. A request is
//! admitted when, for every window of its group, fewer than `max` admitted requests fall within the
//! last `per` (a sliding window); refused requests are not logged. A refusal says how long until
//! the oldest request that blocks it leaves its window, which the fake sends as `Retry-After`.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Hex's rate-limit groups. Which operation is in which group is in the endpoint table
/// (`routes/endpoints.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RateGroup {
    /// `hex-api`, the default group: 30 per minute and 1,800 per hour ("may vary"). Operations
    /// whose description names no group are here too.
    HexApi,
    /// `hex-api-30rpm`: a fixed 30 per minute (Me, ListUsers, the cell endpoints, …).
    HexApi30Rpm,
    /// `hex-run-kernel`: starting runs and sending thread messages. The spec says only that the
    /// limits "may vary"; older docs said 20 per minute and 60 per hour.
    RunKernel,
    /// `hex-chart-image`: rendering chart images, 20 per minute.
    ChartImage,
    /// Semantic project ingest: 3 per minute.
    SemanticIngest,
}

impl RateGroup {
    /// Every group.
    pub const ALL: [RateGroup; 5] = [
        RateGroup::HexApi,
        RateGroup::HexApi30Rpm,
        RateGroup::RunKernel,
        RateGroup::ChartImage,
        RateGroup::SemanticIngest,
    ];

    /// The group's name in Hex's spec (`hex-api`, …); the ingest limit has none there, so the fake
    /// calls it `semantic-ingest`.
    pub fn name(self) -> &'static str {
        match self {
            RateGroup::HexApi => "hex-api",
            RateGroup::HexApi30Rpm => "hex-api-30rpm",
            RateGroup::RunKernel => "hex-run-kernel",
            RateGroup::ChartImage => "hex-chart-image",
            RateGroup::SemanticIngest => "semantic-ingest",
        }
    }
}

/// At most `max` requests in any span of `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Requests allowed within the window.
    pub max: u32,
    /// The window's length.
    pub per: Duration,
}

impl Window {
    /// `max` requests per minute.
    pub fn per_minute(max: u32) -> Self {
        Window { max, per: Duration::from_secs(60) }
    }

    /// `max` requests per hour.
    pub fn per_hour(max: u32) -> Self {
        Window { max, per: Duration::from_secs(3600) }
    }
}

/// The limits of every group; a group with no windows is unlimited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimits {
    windows: HashMap<RateGroup, Vec<Window>>,
}

impl RateLimits {
    /// Hex's documented defaults: `hex-api` 30/min and 1,800/h; `hex-api-30rpm` 30/min;
    /// `hex-run-kernel` 20/min and 60/h; `hex-chart-image` 20/min; semantic ingest 3/min.
    pub fn hex_defaults() -> Self {
        RateLimits::unlimited()
            .with(RateGroup::HexApi, &[Window::per_minute(30), Window::per_hour(1800)])
            .with(RateGroup::HexApi30Rpm, &[Window::per_minute(30)])
            .with(RateGroup::RunKernel, &[Window::per_minute(20), Window::per_hour(60)])
            .with(RateGroup::ChartImage, &[Window::per_minute(20)])
            .with(RateGroup::SemanticIngest, &[Window::per_minute(3)])
    }

    /// No limits at all.
    pub fn unlimited() -> Self {
        RateLimits { windows: HashMap::new() }
    }

    /// These limits with `group`'s windows replaced by `windows` (none: unlimited).
    pub fn with(mut self, group: RateGroup, windows: &[Window]) -> Self {
        self.windows.insert(group, windows.to_vec());
        self
    }

    /// The windows of `group`.
    pub fn windows(&self, group: RateGroup) -> &[Window] {
        self.windows.get(&group).map(Vec::as_slice).unwrap_or_default()
    }
}

impl Default for RateLimits {
    /// [`RateLimits::hex_defaults`].
    fn default() -> Self {
        RateLimits::hex_defaults()
    }
}

/// The logs behind the limits, keyed by (token id, group).
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    logs: HashMap<(u64, RateGroup), VecDeque<Instant>>,
}

impl Limiter {
    /// Admits (and logs) a request of `token` in `group` at `now`, or says how long until it
    /// would be admitted.
    pub(crate) fn admit(
        &mut self,
        token: u64,
        group: RateGroup,
        windows: &[Window],
        now: Instant,
    ) -> Result<(), Duration> {
        let Some(longest) = windows.iter().map(|w| w.per).max() else { return Ok(()) };
        let log = self.logs.entry((token, group)).or_default();
        while log.front().is_some_and(|t| now.duration_since(*t) >= longest) {
            log.pop_front();
        }
        let mut wait = Duration::ZERO;
        for window in windows {
            let inside: Vec<Instant> =
                log.iter().copied().filter(|t| now.duration_since(*t) < window.per).collect();
            if inside.len() >= window.max as usize {
                // The request fits once enough of the oldest ones in the window have left it.
                let blocker = inside.len() - window.max as usize;
                let until = inside.get(blocker).map_or(window.per, |t| *t + window.per - now);
                wait = wait.max(until);
            }
        }
        if wait > Duration::ZERO {
            return Err(wait);
        }
        log.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_admits_max_requests_then_says_when_the_next_fits() {
        let mut limiter = Limiter::default();
        let windows = [Window { max: 2, per: Duration::from_secs(10) }];
        let t0 = Instant::now();
        assert_eq!(limiter.admit(1, RateGroup::HexApi, &windows, t0), Ok(()));
        let t1 = t0 + Duration::from_secs(4);
        assert_eq!(limiter.admit(1, RateGroup::HexApi, &windows, t1), Ok(()));
        let t2 = t0 + Duration::from_secs(5);
        assert_eq!(limiter.admit(1, RateGroup::HexApi, &windows, t2), Err(Duration::from_secs(5)));
        // Other tokens and other groups have logs of their own.
        assert_eq!(limiter.admit(2, RateGroup::HexApi, &windows, t2), Ok(()));
        assert_eq!(limiter.admit(1, RateGroup::ChartImage, &windows, t2), Ok(()));
        // Once the first request leaves the window, one more fits.
        let t3 = t0 + Duration::from_secs(10);
        assert_eq!(limiter.admit(1, RateGroup::HexApi, &windows, t3), Ok(()));
        assert!(limiter.admit(1, RateGroup::HexApi, &windows, t3).is_err());
    }

    #[test]
    fn every_window_of_a_group_must_have_room() {
        let mut limiter = Limiter::default();
        let windows =
            [Window { max: 5, per: Duration::from_secs(1) }, Window { max: 2, per: Duration::from_secs(60) }];
        let t0 = Instant::now();
        assert!(limiter.admit(1, RateGroup::RunKernel, &windows, t0).is_ok());
        assert!(limiter.admit(1, RateGroup::RunKernel, &windows, t0).is_ok());
        assert_eq!(limiter.admit(1, RateGroup::RunKernel, &windows, t0), Err(Duration::from_secs(60)));
    }

    #[test]
    fn defaults_follow_hexs_descriptions_and_unlimited_has_no_windows() {
        let defaults = RateLimits::default();
        assert_eq!(defaults.windows(RateGroup::HexApi30Rpm), [Window::per_minute(30)]);
        assert_eq!(defaults.windows(RateGroup::SemanticIngest), [Window::per_minute(3)]);
        assert!(RateGroup::ALL.iter().all(|g| RateLimits::unlimited().windows(*g).is_empty()));
    }
}
