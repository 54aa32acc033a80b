//! The `key=value` VERSION files HDFS keeps in every storage directory
//! (Java properties: `#` comments, one pair per line).

use std::collections::BTreeMap;

/// The pairs of a VERSION file, comments skipped.
pub fn parse(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// A VERSION file: a comment line, then the pairs in the order given.
pub fn render(comment: &str, pairs: &[(&str, String)]) -> String {
    let mut out = format!("#{comment}\n");
    for (key, value) in pairs {
        out.push_str(&format!("{key}={value}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let text = render(
            "made by a test",
            &[
                ("clusterID", "CID-1".into()),
                ("layoutVersion", "-1".into()),
            ],
        );
        let pairs = parse(&format!("{text}# another comment\nnot a pair\n"));
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs["clusterID"], "CID-1");
    }
}
