//! Times as metrics.json writes them and reads them back: RFC 3339 in UTC, with milliseconds.
//! The functions double as a serde `with` module.

use std::time::SystemTime;

use serde::{Deserialize, Deserializer, Serializer};

/// Formats `time`, e.g. `2026-01-01T00:01:30.000Z`.
///
/// # Examples
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let time = UNIX_EPOCH + Duration::from_millis(1_767_225_690_250);
/// assert_eq!(coordmetrics_report::time::format(time), "2026-01-01T00:01:30.250Z");
/// ```
pub fn format(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

/// Serde serializer: [`format()`].
///
/// # Errors
/// Only those of `serializer`.
pub fn serialize<S: Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(*time))
}

/// Serde deserializer: RFC 3339, with or without fractional seconds.
///
/// # Errors
/// Not a string, or not RFC 3339.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SystemTime, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_rfc3339_weak(&text).map_err(serde::de::Error::custom)
}
