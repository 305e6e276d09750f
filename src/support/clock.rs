//! The clock, and time zones as the config spells them.

use jiff::tz::{Offset, TimeZone};

/// The current time in whole seconds since the epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// An IANA zone name (`Asia/Shanghai`) or a fixed offset (`+08:00`, `-05:30`, `UTC`).
pub fn parse_timezone(spec: &str) -> Result<TimeZone, String> {
    let spec = spec.trim();
    if spec.eq_ignore_ascii_case("utc") {
        return Ok(TimeZone::UTC);
    }
    if let Some(rest) = spec.strip_prefix(['+', '-']) {
        let sign: i32 = if spec.starts_with('-') { -1 } else { 1 };
        let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
        let (Ok(h), Ok(m)) = (h.parse::<i32>(), m.parse::<i32>()) else {
            return Err(format!("{spec:?} is not an offset like +08:00"));
        };
        if !(0..=23).contains(&h) || !(0..=59).contains(&m) {
            return Err(format!("{spec:?} is out of range"));
        }
        let offset = Offset::from_seconds(sign * (h * 3600 + m * 60)).map_err(|e| e.to_string())?;
        return Ok(TimeZone::fixed(offset));
    }
    TimeZone::get(spec).map_err(|_| {
        format!(
            "unknown time zone {spec:?} (use a name like Asia/Shanghai or an offset like +08:00)"
        )
    })
}
