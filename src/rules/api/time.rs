//! The clock: `now()` (Unix seconds), `now_ms()`, `format_time(ts)` (`2026-11-21 14:03:05`)
//! and `format_time(ts, fmt)` (strftime: `%Y-%m-%d`, `%H:%M`, `%A`, …), in `[rules] timezone`.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use rhai::{Engine, EvalAltResult, INT};

use super::ScriptModule;
use crate::rules::context::runtime_error;

/// The clock functions, formatting in one time zone.
pub struct Clock {
    /// `[rules] timezone`.
    pub timezone: TimeZone,
}

fn format(tz: &TimeZone, ts: INT, fmt: &str) -> Result<String, Box<EvalAltResult>> {
    let at = Timestamp::from_second(ts).map_err(|e| runtime_error(format!("format_time: {e}")))?;
    let zoned = at.to_zoned(tz.clone());
    // strftime errors (an unknown directive) are a script error, not a panic.
    let mut out = String::new();
    jiff::fmt::strtime::format(fmt, &zoned)
        .map(|s| out.push_str(&s))
        .map_err(|e| runtime_error(format!("format_time: {e}")))?;
    Ok(out)
}

impl ScriptModule for Clock {
    fn name(&self) -> &'static str {
        "time"
    }

    fn register(&self, engine: &mut Engine) {
        let tz = self.timezone.clone();
        let tz2 = self.timezone.clone();
        engine
            .register_fn("now", || Timestamp::now().as_second())
            .register_fn("now_ms", || Timestamp::now().as_millisecond())
            .register_fn("format_time", move |ts: INT| {
                format(&tz, ts, "%Y-%m-%d %H:%M:%S")
            })
            .register_fn("format_time", move |ts: INT, fmt: &str| {
                format(&tz2, ts, fmt)
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::clock::parse_timezone;

    #[test]
    fn zones_and_offsets() {
        let shanghai = parse_timezone("Asia/Shanghai").unwrap();
        assert_eq!(
            format(&shanghai, 0, "%Y-%m-%d %H:%M").unwrap(),
            "1970-01-01 08:00"
        );
        let fixed = parse_timezone("-05:30").unwrap();
        assert_eq!(format(&fixed, 0, "%H:%M").unwrap(), "18:30");
        assert_eq!(
            format(&parse_timezone("UTC").unwrap(), 86_400, "%F").unwrap(),
            "1970-01-02"
        );
        assert!(parse_timezone("Mars/Olympus").is_err());
        assert!(parse_timezone("+25:00").is_err());
    }
}
