//! Number and date formats of HDFS's operator reports (fsck, dfsadmin),
//! which are Java's: `StringUtils.byteDesc`, `Float.toString`,
//! `Date.toString`.

use chrono::{TimeZone, Utc};

/// `1234 B` -> `1.21 KB`: two decimals rounded half-up, exact multiples as
/// integers, as `StringUtils.byteDesc`.
pub fn byte_desc(n: u64) -> String {
    const SYMBOLS: [&str; 6] = ["KB", "MB", "GB", "TB", "PB", "EB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut index = 0usize;
    while index + 1 < SYMBOLS.len() && n >= 1u64 << (10 * (index + 2)) {
        index += 1;
    }
    let mut shift = 10 * (index as u32 + 1);
    if n & ((1u64 << shift) - 1) == 0 {
        return format!("{} {}", n >> shift, SYMBOLS[index]);
    }
    let mut hundredths = round_half_up_hundredths(n, shift);
    if hundredths >= 1024 * 100 && index + 1 < SYMBOLS.len() {
        index += 1;
        shift += 10;
        hundredths = round_half_up_hundredths(n, shift);
    }
    format!(
        "{}.{:02} {}",
        hundredths / 100,
        hundredths % 100,
        SYMBOLS[index]
    )
}

/// `n / 2^shift` in hundredths, rounded half-up (Java's `%.2f`).
fn round_half_up_hundredths(n: u64, shift: u32) -> u128 {
    let scaled = u128::from(n) * 100;
    let quotient = scaled >> shift;
    let remainder = scaled & ((1u128 << shift) - 1);
    if remainder * 2 >= 1u128 << shift {
        quotient + 1
    } else {
        quotient
    }
}

/// `n (1.21 KB)`.
pub fn bytes_with_desc(n: u64) -> String {
    format!("{n} ({})", byte_desc(n))
}

/// A percentage with two decimals, half-up.
pub fn percent(fraction_times_100: f64) -> String {
    let rounded = (fraction_times_100 * 100.0 + 0.5).floor() / 100.0;
    format!("{rounded:.2}%")
}

/// Java's `Float.toString`: shortest round-trip digits, `.0` for integral
/// values, E notation below 1e-3 and from 1e7.
pub fn java_float(value: f32) -> String {
    if value == 0.0 {
        return "0.0".to_string();
    }
    let magnitude = value.abs();
    if !(1e-3..1e7).contains(&magnitude) {
        let text = format!("{value:e}");
        let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
        let mantissa = if mantissa.contains('.') {
            mantissa.to_string()
        } else {
            format!("{mantissa}.0")
        };
        return format!("{mantissa}E{exponent}");
    }
    let text = format!("{value}");
    if text.contains('.') {
        text
    } else {
        format!("{text}.0")
    }
}

/// Java's `Date.toString`, in UTC: `Thu Oct 08 18:46:47 UTC 2020`.
pub fn java_date(ms: u64) -> String {
    Utc.timestamp_millis_opt(ms as i64).single().map_or_else(
        || "Thu Jan 01 00:00:00 UTC 1970".to_string(),
        |t| t.format("%a %b %d %H:%M:%S UTC %Y").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_desc_matches_hadoop() {
        assert_eq!(byte_desc(0), "0 B");
        assert_eq!(byte_desc(1023), "1023 B");
        assert_eq!(byte_desc(1024), "1 KB");
        assert_eq!(byte_desc(1234), "1.21 KB");
        assert_eq!(byte_desc(1152), "1.13 KB");
        assert_eq!(byte_desc(134217728), "128 MB");
        assert_eq!(byte_desc(1073729536), "1023.99 MB");
        assert_eq!(byte_desc(3000000000), "2.79 GB");
    }

    #[test]
    fn java_floats() {
        assert_eq!(java_float(100.0), "100.0");
        assert_eq!(java_float(100.0 / 3.0), "33.333332");
        assert_eq!(java_float(3.0), "3.0");
        assert_eq!(java_float(0.0001), "1.0E-4");
        assert_eq!(java_float(0.0), "0.0");
        assert_eq!(java_date(0), "Thu Jan 01 00:00:00 UTC 1970");
    }
}
