//! The console's shared pieces of page: the frame every page has (head, navigation, sign-out),
//! status badges, times, empty states and pagers. Markup only, through maud, which escapes every
//! value it is given; no inline style or script (the CSP forbids both).

use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};
use uuid::Uuid;

use super::Console;

/// The sections of the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    /// `/console/connections` and a connection.
    Connections,
    /// `/console/events`.
    Events,
    /// `/console/audit`.
    Audit,
    /// `/console/keys`.
    Keys,
    /// `/console/webhooks`.
    Webhooks,
    /// Sign-in and error pages outside a section.
    None,
}

const SECTIONS: [(Section, &str, &str); 5] = [
    (Section::Connections, "/console/connections", "Connections"),
    (Section::Events, "/console/events", "Events"),
    (Section::Audit, "/console/audit", "Audit"),
    (Section::Keys, "/console/keys", "API keys"),
    (Section::Webhooks, "/console/webhooks", "Webhooks"),
];

/// A whole page: `title` as its `<title>` and heading, the navigation when signed in.
pub(crate) fn page(title: &str, section: Section, console: Option<&Console>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · hexbroker console" }
                link rel="stylesheet" href="/console/app.css";
                script src="/console/app.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    div.brand { a href="/console/connections" { "hexbroker" } span.muted { " console" } }
                    @if let Some(console) = console {
                        nav aria-label="Console sections" {
                            ul {
                                @for (s, href, label) in SECTIONS {
                                    li {
                                        @if s == section {
                                            a href=(href) aria-current="page" { (label) }
                                        } @else {
                                            a href=(href) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                        form.signout method="post" action="/console/sign-out" {
                            (csrf(console))
                            span.who { "Signed in as " strong { (console.session.key_name) } " in " strong { (console.session.tenant) } }
                            button.secondary type="submit" { "Sign out" }
                        }
                    }
                }
                main #main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The hidden CSRF field every console form carries.
pub(crate) fn csrf(console: &Console) -> Markup {
    html! { input type="hidden" name="csrf" value=(console.csrf); }
}

/// A one-button form posting to `action` (an action on a row).
pub(crate) fn action_button(console: &Console, action: &str, label: &str, class: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf(console))
            button class=(class) type="submit" { (label) }
        }
    }
}

/// A coloured badge with a word in it (the colour never carries meaning alone).
pub(crate) fn badge(word: &str, tone: &str) -> Markup {
    html! { span class={ "badge badge-" (tone) } { (word) } }
}

/// A connection's status as a badge: active, expiring soon (within `warning` of its expiry),
/// invalid or expired.
pub(crate) fn status_badge(
    status: &str,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    warning: chrono::TimeDelta,
) -> Markup {
    match status {
        "active" if expires_at.is_some_and(|at| at > now && at - now <= warning) => {
            badge("expiring soon", "warn")
        }
        "active" => badge("active", "ok"),
        "invalid" => badge("invalid", "bad"),
        "expired" => badge("expired", "bad"),
        other => badge(other, "muted"),
    }
}

/// A time, relative to `now` in words, the exact time on hover and for machines.
pub(crate) fn time(at: DateTime<Utc>, now: DateTime<Utc>) -> Markup {
    let exact = at.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    html! { time datetime=(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)) title=(exact) { (relative(at, now)) } }
}

/// An optional time, or a dash.
pub(crate) fn maybe_time(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Markup {
    match at {
        Some(at) => time(at, now),
        None => html! { span.muted { "—" } },
    }
}

/// `5 minutes ago`, `in 3 days`, `just now`.
pub(crate) fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (at - now).num_seconds();
    let ahead = seconds > 0;
    let n = seconds.unsigned_abs();
    if n < 45 {
        return "just now".into();
    }
    let (count, unit) = match n {
        n if n < 3600 => (((n + 30) / 60).max(1), "minute"),
        n if n < 36 * 3600 => ((n + 1800) / 3600, "hour"),
        n if n < 45 * 86_400 => ((n + 43_200) / 86_400, "day"),
        n if n < 548 * 86_400 => ((n + 15 * 86_400) / (30 * 86_400), "month"),
        n => ((n + 182 * 86_400) / (365 * 86_400), "year"),
    };
    let plural = if count == 1 { "" } else { "s" };
    if ahead {
        format!("in {count} {unit}{plural}")
    } else {
        format!("{count} {unit}{plural} ago")
    }
}

/// What an empty list says, and what to do next.
pub(crate) fn empty(what: &str, next: Markup) -> Markup {
    html! {
        div.empty role="status" {
            p { strong { (what) } }
            p { (next) }
        }
    }
}

/// A message box: `tone` `ok` or `bad`.
pub(crate) fn notice(tone: &str, text: &str) -> Markup {
    html! { div class={ "notice notice-" (tone) } role=(if tone == "bad" { "alert" } else { "status" }) { (text) } }
}

/// The link to the next page, when there is one: `base` (a path with its filters) plus `before`.
pub(crate) fn pager(base: &str, next: Option<Uuid>) -> Markup {
    let separator = if base.contains('?') { '&' } else { '?' };
    html! {
        @if let Some(after) = next {
            nav.pager aria-label="Pages" {
                a href={ (base) (separator) "before=" (after) } rel="next" { "Older →" }
            }
        }
    }
}

/// Builds a URL query from the filters that are set, each value percent-encoded.
pub(crate) fn query(path: &str, pairs: &[(&str, Option<&str>)]) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (name, value) in pairs {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            out.append_pair(name, value);
            any = true;
        }
    }
    if any {
        format!("{path}?{}", out.finish())
    } else {
        path.to_owned()
    }
}

/// Cuts `rows` (read one past `limit`) to `limit`; the id to continue before, when more remain.
pub(crate) fn cut<T>(mut rows: Vec<T>, limit: u32, id: impl Fn(&T) -> Uuid) -> (Vec<T>, Option<Uuid>) {
    if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        let next = rows.last().map(id);
        (rows, next)
    } else {
        (rows, None)
    }
}

/// A value that may be missing, or a dash.
pub(crate) fn or_dash(text: Option<&str>) -> Markup {
    match text.filter(|t| !t.is_empty()) {
        Some(text) => html! { (text) },
        None => html! { span.muted { "—" } },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_as_people_say_them() {
        let now = Utc::now();
        let at = |s: i64| now + chrono::TimeDelta::seconds(s);
        assert_eq!(relative(at(-10), now), "just now");
        assert_eq!(relative(at(-60), now), "1 minute ago");
        assert_eq!(relative(at(-600), now), "10 minutes ago");
        assert_eq!(relative(at(-7200), now), "2 hours ago");
        assert_eq!(relative(at(3 * 86_400), now), "in 3 days");
        assert_eq!(relative(at(-400 * 86_400), now), "13 months ago");
    }

    #[test]
    fn values_are_escaped_and_queries_encoded() {
        let markup = or_dash(Some("<script>alert(1)</script>")).into_string();
        assert_eq!(markup, "&lt;script&gt;alert(1)&lt;/script&gt;");
        assert_eq!(
            query("/console/connections", &[("status", Some("active")), ("end_user_id", Some("a&b"))]),
            "/console/connections?status=active&end_user_id=a%26b"
        );
        assert_eq!(query("/x", &[("status", None), ("q", Some(""))]), "/x");
    }
}
