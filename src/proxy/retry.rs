//! §7's retry rules: a request that never reached Hex, or that Hex refused with 429, may be
//! retried whatever its method; 502, 503 and 504 only for idempotent methods. `Retry-After` is
//! honoured in both forms (seconds, HTTP date) within a bounded wait budget; without it, waits
//! back off exponentially. Only requests whose body is buffered (small, of known length) can be
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
        let backoff = Duration::from_millis(100) * 2u32.saturating_pow(retries);
        let wait = retry_after.unwrap_or(backoff);
        (waited + wait <= self.budget).then_some(wait)
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
        let cases: [Case; 14] = [
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
        ];
        for (value, expected) in cases {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
            assert_eq!(retry_after(&headers, now).map(|d| d.as_secs()), expected, "{value}");
        }
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }
}
