//! §7's retry rules: a request that never reached Hex, or that Hex refused with 429, may be
//! retried whatever its method; 502, 503 and 504 only for idempotent methods. `Retry-After` is
//! honoured in both forms (seconds, HTTP date) within a bounded wait budget, whatever value Hex
//! sends (the arithmetic saturates, and no wait exceeds the budget); without it, waits back off
//! exponentially. Only requests whose body is buffered (small, of known length) can be
//! sent again; a streamed body goes once.

use std::time::{Duration, SystemTime};

use axum::http::{header::RETRY_AFTER, HeaderMap, Method, StatusCode};

/// How hard the proxy tries.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The most time one call may spend waiting between attempts.
    pub budget: Duration,
}

/// What became of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The request never reached Hex (connect or TLS failure).
    NotSent,
    /// Hex answered with this status.
    Answered(StatusCode),
    /// Sent, but no answer came (timeout or a broken connection): Hex may have acted, so it is
    /// never retried.
    Lost,
}

impl RetryPolicy {
    /// How long to wait before trying again, or `None` to stop. `retry_after` is Hex's header,
    /// `retries` those made so far, `waited` the time already spent waiting.
    pub fn next_wait(
        &self,
        method: &Method,
        attempt: Attempt,
        retry_after: Option<Duration>,
        retries: u32,
        waited: Duration,
    ) -> Option<Duration> {
        if retries >= self.max_retries {
            return None;
        }
        let retryable = match attempt {
            Attempt::NotSent => true,
            Attempt::Answered(StatusCode::TOO_MANY_REQUESTS) => true,
            Attempt::Answered(
                StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT,
            ) => is_idempotent(method),
            Attempt::Answered(_) | Attempt::Lost => false,
        };
        if !retryable {
            return None;
        }
        let backoff = Duration::from_millis(100).saturating_mul(2u32.saturating_pow(retries));
        let wait = retry_after.unwrap_or(backoff);
        (waited.saturating_add(wait) <= self.budget).then_some(wait)
    }
}

/// Methods that mean the same when sent twice (RFC 9110 §9.2.2).
pub fn is_idempotent(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE)
}

/// Reads `Retry-After` as delay-seconds or an HTTP date (a date in the past means now).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const POLICY: RetryPolicy = RetryPolicy { max_retries: 2, budget: Duration::from_secs(5) };

    /// Method, attempt, Retry-After, retries so far, time waited, expected wait in ms.
    type Case = (Method, Attempt, Option<Duration>, u32, Duration, Option<u64>);

    #[test]
    fn each_rule_decides_a_retry() {
        let s = |code: u16| Attempt::Answered(StatusCode::from_u16(code).unwrap());
        let zero = Duration::ZERO;
        let huge = Some(Duration::MAX);
        let cases: [Case; 17] = [
            (Method::POST, Attempt::NotSent, None, 0, zero, Some(100)),
            (Method::GET, Attempt::NotSent, None, 1, zero, Some(200)),
            (Method::POST, s(429), None, 0, zero, Some(100)),
            (Method::POST, s(429), Some(Duration::from_secs(2)), 0, zero, Some(2000)),
            (Method::GET, s(503), None, 0, zero, Some(100)),
            (Method::PUT, s(502), None, 0, zero, Some(100)),
            (Method::DELETE, s(504), None, 0, zero, Some(100)),
            (Method::POST, s(503), None, 0, zero, None),
            (Method::PATCH, s(502), None, 0, zero, None),
            (Method::GET, s(500), None, 0, zero, None),
            (Method::GET, s(401), None, 0, zero, None),
            (Method::GET, Attempt::Lost, None, 0, zero, None),
            (Method::GET, s(429), None, 2, zero, None),
            (Method::GET, s(429), Some(Duration::from_secs(4)), 1, Duration::from_secs(2), None),
            (Method::GET, s(429), huge, 0, zero, None),
            (Method::GET, s(429), huge, 1, Duration::MAX, None),
            (Method::GET, s(503), None, 1, Duration::MAX, None),
        ];
        for (method, attempt, after, retries, waited, expected) in cases {
            let got = POLICY.next_wait(&method, attempt, after, retries, waited);
            assert_eq!(
                got.map(|d| d.as_millis() as u64),
                expected,
                "{method} {attempt:?} {after:?} {retries}"
            );
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let cases = [
            ("7", Some(7)),
            (" 0 ", Some(0)),
            ("Sun, 06 Nov 1994 08:49:47 GMT", Some(10)),
            ("Sun, 06 Nov 1994 08:49:00 GMT", Some(0)),
            ("soon", None),
            ("-1", None),
            ("18446744073709551615", Some(u64::MAX)),
            ("18446744073709551616", None),
            ("Fri, 31 Dec 9999 23:59:59 GMT", Some(253_402_300_799 - 784_111_777)),
        ];
        for (value, expected) in cases {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
            assert_eq!(retry_after(&headers, now).map(|d| d.as_secs()), expected, "{value}");
        }
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn any_method() -> impl Strategy<Value = Method> {
            prop_oneof![
                Just(Method::GET),
                Just(Method::POST),
                Just(Method::PUT),
                Just(Method::PATCH),
                Just(Method::DELETE),
            ]
        }

        fn any_attempt() -> impl Strategy<Value = Attempt> {
            prop_oneof![
                Just(Attempt::NotSent),
                Just(Attempt::Lost),
                (100u16..600).prop_map(|code| Attempt::Answered(StatusCode::from_u16(code).unwrap())),
            ]
        }

        proptest! {
            /// Any header value Hex could send reads without panicking, and any wait it yields,
            /// with any retry count and any time already waited, stays within the budget.
            #[test]
            fn no_header_value_panics_and_no_wait_exceeds_the_budget(
                value in prop_oneof![
                    any::<u64>().prop_map(|n| n.to_string()),
                    "[0-9]{1,40}",
                    "[ -~]{0,40}",
                    prop::collection::vec(any::<u8>(), 0..40)
                        .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
                    (0u64..i64::MAX as u64).prop_map(|s| {
                        httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(s % 253_402_300_799))
                    }),
                ],
                now_secs in 0u64..4_000_000_000,
                method in any_method(),
                attempt in any_attempt(),
                retries in any::<u32>(),
                waited_ms in any::<u64>(),
                max_retries in any::<u32>(),
                budget_ms in any::<u64>(),
            ) {
                let Ok(header) = axum::http::HeaderValue::from_str(&value) else { return Ok(()) };
                let mut headers = HeaderMap::new();
                headers.insert(RETRY_AFTER, header);
                let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now_secs);
                let hint = retry_after(&headers, now);
                let policy = RetryPolicy { max_retries, budget: Duration::from_millis(budget_ms) };
                let waited = Duration::from_millis(waited_ms);
                if let Some(wait) = policy.next_wait(&method, attempt, hint, retries, waited) {
                    prop_assert!(wait <= policy.budget);
                    prop_assert!(waited.saturating_add(wait) <= policy.budget);
                    prop_assert!(retries < max_retries);
                }
            }
        }
    }
}
