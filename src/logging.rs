//! Log setup for the binary and small helpers that keep log fields readable
//! for people: no `Some(…)`, durations rounded.

use std::fmt;
use std::time::Duration;

/// Whether the text log may use ANSI colour: only when stderr is a terminal
/// and `NO_COLOR` is unset or empty (<https://no-color.org>).
pub fn use_color(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Install the process's log subscriber: `text` or `json` on stderr,
/// filtered by `SPANGATE_LOG` (default `info`).
pub fn init(format: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SPANGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let color = use_color(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Milliseconds with at most one decimal (audit `duration_ms`).
pub fn round_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// A duration for a log field: whole milliseconds in humantime form
/// (`1s 500ms`, `30s`), never a long float.
pub fn human(d: Duration) -> humantime::FormattedDuration {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    humantime::format_duration(Duration::from_millis(ms))
}

/// An optional value for a log field: the value, or `none`.
pub struct OrNone<'a, T>(pub &'a Option<T>);

impl<T: fmt::Display> fmt::Display for OrNone<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("none"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_color(true, None));
        assert!(use_color(true, Some(OsStr::new(""))));
        assert!(!use_color(true, Some(OsStr::new("1"))));
        assert!(!use_color(false, None));
        assert!(!use_color(false, Some(OsStr::new("1"))));
    }

    #[test]
    fn durations_are_rounded() {
        assert_eq!(round_ms(Duration::from_nanos(4_148_482)), 4.1);
        assert_eq!(round_ms(Duration::from_nanos(4_150_001)), 4.2);
        assert_eq!(round_ms(Duration::from_secs(2)), 2000.0);
        assert_eq!(
            human(Duration::from_nanos(1_500_400_000)).to_string(),
            "1s 500ms"
        );
        assert_eq!(human(Duration::from_secs(30)).to_string(), "30s");
    }

    #[test]
    fn optional_fields_print_without_some() {
        assert_eq!(OrNone(&Some(3)).to_string(), "3");
        assert_eq!(OrNone::<u64>(&None).to_string(), "none");
        assert_eq!(OrNone(&Some("abc")).to_string(), "abc");
    }
}
