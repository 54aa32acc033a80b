//! Formatting as Hadoop's shell does it: permission strings, human-readable
//! sizes (`TraditionalBinaryPrefix.long2String`), dates.

use chrono::{Local, TimeZone, Utc};

/// `rwxr-xr-x`, with the sticky bit as `t`/`T` in the last place.
pub fn permission(mode: u16) -> String {
    let mut out = String::with_capacity(9);
    for shift in [6u16, 3, 0] {
        let bits = (mode >> shift) & 7;
        out.push(if bits & 4 != 0 { 'r' } else { '-' });
        out.push(if bits & 2 != 0 { 'w' } else { '-' });
        out.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    if mode & 0o1000 != 0 {
        let other_exec = mode & 1 != 0;
        out.pop();
        out.push(if other_exec { 't' } else { 'T' });
    }
    out
}

/// `%a` of `-stat`: the octal digits printed without leading zeros.
pub fn octal(mode: u16) -> String {
    let sticky = (mode >> 9) & 1;
    let value = u32::from(sticky) * 1000
        + u32::from((mode >> 6) & 7) * 100
        + u32::from((mode >> 3) & 7) * 10
        + u32::from(mode & 7);
    value.to_string()
}

/// Hadoop's `-h` sizes: `1023`, `1 K`, `1.5 K`, `256 M`.
pub fn human(n: u64) -> String {
    const SYMBOLS: [char; 6] = ['K', 'M', 'G', 'T', 'P', 'E'];
    if n < 1024 {
        return n.to_string();
    }
    let mut index = 0;
    while index + 1 < SYMBOLS.len() && n >= 1u64 << (10 * (index + 2)) {
        index += 1;
    }
    let shift = 10 * (index as u32 + 1);
    if n & ((1u64 << shift) - 1) == 0 {
        return format!("{} {}", n >> shift, SYMBOLS[index]);
    }
    let mut text = format!("{:.1}", n as f64 / (1u64 << shift) as f64);
    if text.starts_with("1024") && index + 1 < SYMBOLS.len() {
        index += 1;
        text = format!("{:.1}", n as f64 / (1u64 << (shift + 10)) as f64);
    }
    format!("{text} {}", SYMBOLS[index])
}

/// `yyyy-MM-dd HH:mm` in the local time zone (`-ls`).
pub fn ls_date(ms: u64) -> String {
    Local.timestamp_millis_opt(ms as i64).single().map_or_else(
        || "1970-01-01 00:00".to_string(),
        |t| t.format("%Y-%m-%d %H:%M").to_string(),
    )
}

/// `yyyy-MM-dd HH:mm:ss` in UTC (`-stat %y`).
pub fn stat_date(ms: u64) -> String {
    Utc.timestamp_millis_opt(ms as i64).single().map_or_else(
        || "1970-01-01 00:00:00".to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes_match_hadoop() {
        let cases: &[(u64, &str)] = &[
            (0, "0"),
            (1023, "1023"),
            (1024, "1 K"),
            (1025, "1.0 K"),
            (1076, "1.1 K"),
            (1536, "1.5 K"),
            (2047, "2.0 K"),
            (1048064, "1023.5 K"),
            (1048575, "1.0 M"),
            (1048576, "1 M"),
            (3000000, "2.9 M"),
            (268435456, "256 M"),
            (1610612736, "1.5 G"),
            (21474836480, "20 G"),
            (21474838019, "20.0 G"),
            (1 << 40, "1 T"),
            (1 << 60, "1 E"),
            (u64::MAX >> 1, "8.0 E"),
        ];
        for (n, expected) in cases {
            assert_eq!(human(*n), *expected, "{n}");
        }
    }

    #[test]
    fn permissions() {
        assert_eq!(permission(0o755), "rwxr-xr-x");
        assert_eq!(permission(0o644), "rw-r--r--");
        assert_eq!(permission(0o1777), "rwxrwxrwt");
        assert_eq!(permission(0o1770), "rwxrwx--T");
        assert_eq!(octal(0o644), "644");
        assert_eq!(octal(0o1777), "1777");
        assert_eq!(octal(0o007), "7");
    }
}
