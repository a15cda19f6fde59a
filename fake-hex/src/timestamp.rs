//! Hex's timestamp format: RFC 3339 in UTC with exactly three fractional digits and a `Z`
//! (`2024-01-01T00:00:00.000Z`). Some Hex clients parse exactly that shape, so every timestamp the
//! fake sends goes through [`format`].

use chrono::{DateTime, SubsecRound, Utc};

/// The current time, truncated to milliseconds so that stored times print the way they compare.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// Formats a time the way Hex does: `2024-01-01T00:00:00.000Z`.
pub(crate) fn format(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn timestamps_have_milliseconds_and_a_z() {
        let cases = [
            (Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap(), "2024-01-01T00:00:00.000Z"),
            (
                Utc.with_ymd_and_hms(2023, 12, 31, 23, 59, 59).unwrap() + chrono::TimeDelta::milliseconds(7),
                "2023-12-31T23:59:59.007Z",
            ),
        ];
        for (at, expected) in cases {
            assert_eq!(format(at), expected);
        }
    }
}
