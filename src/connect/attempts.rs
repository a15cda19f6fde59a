//! Connect attempts that Hex refuses (§5): each session, API key and client address may have
//! `HEXBROKER_CONNECT_ATTEMPT_LIMIT` of them (default 10 per 10 minutes); past it, `POST
//! /v1/connect` answers 429 `too_many_attempts` without asking Hex, so that the endpoint cannot
//! be used as an oracle for guessing Hex tokens.
//!
//! With a session, the session's end user has an allowance too, shared by every session made
//! for them. An attempt takes its place before Hex is asked, and gives it back unless Hex refused the
//! token or workspace: so only refusals count, and many attempts at once cannot all slip past
//! the limit before the first refusal is counted. An attempt that finds no place left while
//! others are still being judged by Hex waits for them to settle (up to twice Hex's timeout)
//! instead of being refused at once: a backend connecting many users in parallel with one key
//! is not told "too many attempts" when none was refused. IPv6 clients are counted by /64, since
//! one host commonly holds a whole /64.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use uuid::Uuid;

use crate::config::AttemptLimit;
use crate::edge::gcra::KeyedGcra;
use crate::edge::retry_after_seconds;
use crate::hex::{HexClient, Rejection, Workspace};
use crate::store::HexIdentity;

/// Why a connect attempt got no identity from Hex.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttemptError {
    /// An allowance of refusals is spent: Hex was not asked (429 `too_many_attempts`).
    #[error("too many connect attempts were refused; retry after {retry_after} s")]
    TooMany {
        /// Whole seconds until a place frees up, at least one.
        retry_after: u64,
    },
    /// Hex was asked, and did not accept the token.
    #[error(transparent)]
    Hex(#[from] Rejection),
}

/// Who is making a connect attempt; each has an allowance of its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Attempter {
    /// An API key, by id.
    Key(Uuid),
    /// A connect session, by id.
    Session(Uuid),
    /// The end user a connect session was made for: an app may make many sessions for one
    /// person, and they share this allowance.
    EndUser {
        /// The session's tenant.
        tenant: String,
        /// Its end user.
        end_user_id: String,
    },
}

/// The refused-attempt allowances, by caller and by client address.
#[derive(Debug)]
pub struct ConnectAttempts {
    by_caller: KeyedGcra<Attempter>,
    by_address: KeyedGcra<IpAddr>,
    /// Attempts Hex is judging now.
    pending: AtomicUsize,
    /// How long an attempt waits for others to settle before it is refused.
    settle_wait: Duration,
}

/// How often an attempt that waits for others to settle looks again.
const SETTLE_POLL: Duration = Duration::from_millis(20);

/// One attempt being judged; dropping it (done, or the request abandoned) ends its count.
struct Judging<'a>(&'a ConnectAttempts);

impl Drop for Judging<'_> {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ConnectAttempts {
    /// Allowances of `limit` each; `hex_timeout` bounds one judgement by Hex.
    pub fn new(limit: AttemptLimit, hex_timeout: Duration) -> Self {
        Self {
            by_caller: KeyedGcra::new(limit.attempts, limit.window),
            by_address: KeyedGcra::new(limit.attempts, limit.window),
            pending: AtomicUsize::new(0),
            settle_wait: hex_timeout.saturating_mul(2),
        }
    }

    /// Takes a place in every allowance, or none of them.
    fn reserve(&self, who: &[Attempter], address: Option<&IpAddr>, now: Instant) -> Result<(), Duration> {
        for (taken, caller) in who.iter().enumerate() {
            if let Err(wait) = self.by_caller.take(caller, now) {
                self.give_back(&who[..taken], None, now);
                return Err(wait);
            }
        }
        if let Some(address) = address {
            if let Err(wait) = self.by_address.take(address, now) {
                self.give_back(who, None, now);
                return Err(wait);
            }
        }
        Ok(())
    }

    fn give_back(&self, callers: &[Attempter], address: Option<&IpAddr>, now: Instant) {
        for caller in callers {
            self.by_caller.give_back(caller, now);
        }
        if let Some(address) = address {
            self.by_address.give_back(address, now);
        }
    }

    /// Asks Hex about `token` in `workspace` for `who` (each of them) connecting from `from`,
    /// unless one of them is past its allowance of refusals.
    pub async fn verify(
        &self,
        hex: &HexClient,
        who: &[Attempter],
        from: Option<SocketAddr>,
        workspace: &Workspace,
        token: &SecretString,
    ) -> Result<HexIdentity, AttemptError> {
        let address = from.map(|a| address_key(a.ip()));
        let started = Instant::now();
        loop {
            // A polled wait rather than a wake-up per settlement: waiters are few and brief, and
            // a busy replica settles thousands of attempts a second.
            match self.reserve(who, address.as_ref(), Instant::now()) {
                Ok(()) => break,
                Err(wait) if self.pending.load(Ordering::SeqCst) == 0 => return Err(too_many(wait)),
                Err(wait) if started.elapsed() >= self.settle_wait => return Err(too_many(wait)),
                Err(_) => tokio::time::sleep(SETTLE_POLL).await,
            }
        }
        self.pending.fetch_add(1, Ordering::SeqCst);
        let judging = Judging(self);
        let outcome = hex.verify(workspace, token).await;
        let refused = matches!(
            outcome,
            Err(Rejection::TokenRejected | Rejection::InsufficientScope | Rejection::WorkspaceNotFound)
        );
        if refused {
            tracing::info!("connect attempt refused by Hex: counted against its allowance");
        } else {
            self.give_back(who, address.as_ref(), Instant::now());
        }
        drop(judging);
        Ok(outcome?)
    }
}

impl ConnectAttempts {
    /// Takes a place for an operator console sign-in from `from` in that address's allowance
    /// (§12: sign-in attempts count against the same guessing limits), or refuses with 429.
    /// A sign-in that turns out good gives its place back ([`ConnectAttempts::sign_in_good`]),
    /// so only failures count.
    pub fn sign_in_attempt(&self, from: Option<SocketAddr>) -> Result<(), AttemptError> {
        let Some(address) = from.map(|a| address_key(a.ip())) else { return Ok(()) };
        self.by_address.take(&address, Instant::now()).map_err(too_many)
    }

    /// Gives back the place a good sign-in from `from` took.
    pub fn sign_in_good(&self, from: Option<SocketAddr>) {
        if let Some(address) = from.map(|a| address_key(a.ip())) {
            self.by_address.give_back(&address, Instant::now());
        }
    }
}

fn too_many(wait: std::time::Duration) -> AttemptError {
    AttemptError::TooMany { retry_after: retry_after_seconds(wait) }
}

/// The address an allowance is kept for: IPv4 as it is (also when mapped into IPv6), IPv6 by /64.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_counted_by_host_or_ipv6_slash_64() {
        let cases = [
            ("10.1.2.3", "10.1.2.3"),
            ("::ffff:10.1.2.3", "10.1.2.3"),
            ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::"),
            ("2001:db8:1:2::1", "2001:db8:1:2::"),
        ];
        for (ip, key) in cases {
            assert_eq!(address_key(ip.parse().unwrap()), key.parse::<IpAddr>().unwrap(), "{ip}");
        }
    }
}
