//! Which paths may be forwarded (§7): none that could climb out of `{origin}/api/` once Hex, or
//! anything in front of it, normalises the path. Refused: dot segments plain or encoded in any
//! way (percent, double percent, overlong UTF-8, look-alike dots, with `;` parameters), encoded
//! slashes and backslashes, a `%` that does not start a valid escape, and an encoded `%` (the
//! door to double decoding).
//!
//! The common path (no `%` at all) is checked without allocating; only a path holding escapes is
//! decoded, once, into a buffer. Since an encoded `%` is refused, decoding twice gives what
//! decoding once gives, so one decoding is enough.

/// A path that is not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the path may climb out of /api once normalised")]
pub struct InvalidPath;

/// Checks a path to forward.
pub fn check_path(path: &str) -> Result<(), InvalidPath> {
    if path.contains('\\') {
        return Err(InvalidPath);
    }
    if !path.contains('%') {
        return check_segments(path);
    }
    let decoded = decode_strictly(path.as_bytes())?;
    // Rust's UTF-8 check refuses overlong forms (`%c0%ae`, `%e0%80%ae`, …) and surrogates.
    let decoded = std::str::from_utf8(&decoded).map_err(|_| InvalidPath)?;
    if decoded.contains('\\') {
        return Err(InvalidPath);
    }
    check_segments(decoded)
}

/// Refuses any segment that is a dot segment once its `;` parameters are stripped.
fn check_segments(path: &str) -> Result<(), InvalidPath> {
    let climbs = path.split('/').any(|segment| {
        let name = segment.split(';').next().unwrap_or_default();
        is_dots(name)
    });
    if climbs {
        Err(InvalidPath)
    } else {
        Ok(())
    }
}

/// `.` or `..`, also written with characters that Unicode normalisation (NFKC) makes a dot.
fn is_dots(name: &str) -> bool {
    let mut count = 0;
    for c in name.chars() {
        if !matches!(c, '.' | '\u{FF0E}' | '\u{2024}' | '\u{FE52}') {
            return false;
        }
        count += 1;
        if count > 2 {
            return false;
        }
    }
    count > 0
}

/// Decodes every `%XX` once. Refuses a `%` without two hex digits, an encoded `%`, `/` or `\`.
fn decode_strictly(path: &[u8]) -> Result<Vec<u8>, InvalidPath> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        if path[i] != b'%' {
            out.push(path[i]);
            i += 1;
            continue;
        }
        let byte = path
            .get(i + 1..i + 3)
            .and_then(|hex| Some(hex_value(hex[0])? << 4 | hex_value(hex[1])?))
            .ok_or(InvalidPath)?;
        if matches!(byte, b'%' | b'/' | b'\\') {
            return Err(InvalidPath);
        }
        out.push(byte);
        i += 3;
    }
    Ok(out)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hostile_paths_are_refused_and_ordinary_ones_pass() {
        let ok = [
            "/v1/projects",
            "/v1/projects/abc/runs",
            "/v1/projects/a.b",
            "/v1/projects/.hidden",
            "/v1/projects/...",
            "/v1/projects/a%20b",
            "/v1/projects/%C3%A9t%C3%A9",
            "/v1/projects/a;b",
            "/v1/projects/a%2eb",
            "/",
        ];
        for path in ok {
            assert_eq!(check_path(path), Ok(()), "{path}");
        }
        let refused = [
            "/v1/..",
            "/v1/../../admin",
            "/v1/./projects",
            "/v1/%2e%2e/x",
            "/v1/%2E./x",
            "/v1/.%2e/x",
            "/v1/%2e/x",
            "/v1/a%2fb",
            "/v1/a%2Fb",
            "/v1\\..\\x",
            "/v1/a\\b",
            "/v1/a%5cb",
            "/v1/%5C..",
            "/v1/%252e%252e/x",
            "/v1/%252E/x",
            "/v1/%252f",
            "/v1/%255c",
            "/v1/%25",
            "/v1/%%32e%%32e/x",
            "/v1/%2",
            "/v1/%zz",
            "/v1/%c0%ae%c0%ae/x",
            "/v1/%C0%AE/x",
            "/v1/%e0%80%ae/x",
            "/v1/%f0%80%80%ae/x",
            "/v1/%c0%af",
            "/v1/%c1%9c",
            "/v1/%ed%a0%80",
            "/v1/%ff",
            "/v1/..;x/admin",
            "/v1/..;/admin",
            "/v1/.;/x",
            "/v1/.;a=b",
            "/v1/%2e%2e;x/admin",
            "/v1/%ef%bc%8e%ef%bc%8e/x",
            "/v1/%e2%80%a4/x",
            "/v1/%fe%52",
        ];
        for path in refused {
            assert_eq!(check_path(path), Err(InvalidPath), "{path}");
        }
    }

    /// Decodes every valid `%XX`, leaving anything else as it is (as lenient servers do).
    fn decode_leniently(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let escape = (bytes[i] == b'%')
                .then(|| bytes.get(i + 1..i + 3))
                .flatten()
                .and_then(|h| Some(hex_value(h[0])? << 4 | hex_value(h[1])?));
            match escape {
                Some(b) => {
                    out.push(b);
                    i += 3;
                }
                None => {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
        }
        out
    }

    /// Reads overlong UTF-8 forms of ASCII as that ASCII character, as sloppy decoders do.
    fn fold_overlong(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let rest = &bytes[i..];
            let cont = |k: usize| rest.get(k).is_some_and(|b| b & 0xc0 == 0x80);
            let (value, len) = match rest[0] {
                0xc0 | 0xc1 if cont(1) => (u32::from(rest[0] & 0x1f) << 6 | u32::from(rest[1] & 0x3f), 2),
                0xe0 if cont(1) && cont(2) => (u32::from(rest[1] & 0x3f) << 6 | u32::from(rest[2] & 0x3f), 3),
                0xf0 if cont(1) && cont(2) && cont(3) => (
                    u32::from(rest[1] & 0x3f) << 12
                        | u32::from(rest[2] & 0x3f) << 6
                        | u32::from(rest[3] & 0x3f),
                    4,
                ),
                _ => (0x100, 1),
            };
            if value < 0x80 {
                out.push(value as u8);
                i += len;
            } else {
                out.push(rest[0]);
                i += 1;
            }
        }
        out
    }

    /// RFC 3986 §5.2.4.
    fn remove_dot_segments(input: &str) -> String {
        let mut input = input.to_owned();
        let mut output = String::new();
        while !input.is_empty() {
            if let Some(rest) = input.strip_prefix("../").or_else(|| input.strip_prefix("./")) {
                input = rest.to_owned();
            } else if input.starts_with("/./") {
                input.replace_range(..3, "/");
            } else if input == "/." {
                input = "/".into();
            } else if input.starts_with("/../") || input == "/.." {
                input = if input == "/.." { "/".into() } else { input[3..].to_owned() };
                match output.rfind('/') {
                    Some(at) => output.truncate(at),
                    None => output.clear(),
                }
            } else if input == "." || input == ".." {
                input.clear();
            } else {
                let start = usize::from(input.starts_with('/'));
                let end = input[start..].find('/').map_or(input.len(), |at| at + start);
                output.push_str(&input[..end]);
                input = input[end..].to_owned();
            }
        }
        output
    }

    /// What a lenient server in front of Hex might make of `path` after decoding it `times`.
    fn normalised(path: &str, times: usize) -> String {
        let mut bytes = path.as_bytes().to_vec();
        for _ in 0..times {
            bytes = decode_leniently(&bytes);
        }
        let text = String::from_utf8_lossy(&fold_overlong(&bytes))
            .replace(['\u{FF0E}', '\u{2024}', '\u{FE52}'], ".")
            .replace('\\', "/");
        let stripped: Vec<&str> = text.split('/').map(|s| s.split(';').next().unwrap_or_default()).collect();
        remove_dot_segments(&format!("/api{}", stripped.join("/")))
    }

    fn piece() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "/",
            "/",
            "/",
            "v1",
            "projects",
            "a",
            "x.y",
            ".",
            "..",
            ";",
            ";x",
            "%2e",
            "%2E",
            "%2f",
            "%5c",
            "\\",
            "%25",
            "%252e",
            "%252f",
            "%",
            "2e",
            "%c0%ae",
            "%e0%80%ae",
            "%f0%80%80%ae",
            "%c0%af",
            "%ef%bc%8e",
            "%20",
            "%41",
            "%c3%a9",
            "...",
            "%zz",
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        /// Any path the broker accepts stays under `/api/` after decoding it none, once or twice,
        /// folding overlong UTF-8 and look-alike dots, reading `\` as `/`, stripping `;`
        /// parameters and removing dot segments.
        #[test]
        fn an_accepted_path_stays_under_api_after_any_common_normalisation(
            pieces in prop::collection::vec(piece(), 0..12)
        ) {
            let path = format!("/{}", pieces.concat());
            if check_path(&path).is_ok() {
                for times in 0..=2 {
                    let normal = normalised(&path, times);
                    prop_assert!(normal.starts_with("/api/"), "{path} became {normal} after {times} decodings");
                }
            }
        }
    }

    #[test]
    fn the_normalisation_used_by_the_property_does_climb_for_refused_paths() {
        // The property is only worth something if its normalisation finds the climbs.
        for path in ["/..", "/%2e%2e", "/%252e%252e", "/%c0%ae%c0%ae", "/..;x", "/a\\..\\..", "/%ef%bc%8e."] {
            assert!((0..=2).any(|t| !normalised(path, t).starts_with("/api/")), "{path}");
        }
    }
}
