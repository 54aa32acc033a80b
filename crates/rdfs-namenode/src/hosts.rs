//! The include and exclude host files (`dfs.hosts`, `dfs.hosts.exclude`):
//! which datanodes may register and which are to be decommissioned. Both
//! hold host names, addresses or `address:port` entries separated by
//! whitespace, with `#` comments, as HDFS's `HostFileManager` reads them.

use std::collections::HashSet;

use rdfs_common::protocol::DatanodeId;

use crate::topology::host_keys;

#[derive(Debug, Clone, Default)]
pub struct HostLists {
    include: HashSet<String>,
    exclude: HashSet<String>,
}

fn read_list(path: &str) -> Result<HashSet<String>, String> {
    if path.is_empty() {
        return Ok(HashSet::new());
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    Ok(parse_list(&text))
}

fn parse_list(text: &str) -> HashSet<String> {
    text.lines()
        .flat_map(|line| line.split('#').next().unwrap_or("").split_whitespace())
        .map(str::to_string)
        .collect()
}

impl HostLists {
    pub fn load(include_file: &str, exclude_file: &str) -> Result<Self, String> {
        Ok(Self {
            include: read_list(include_file)?,
            exclude: read_list(exclude_file)?,
        })
    }

    /// May this datanode register? Every one may while the include list is
    /// empty.
    pub fn is_allowed(&self, id: &DatanodeId) -> bool {
        self.include.is_empty() || host_keys(id).iter().any(|k| self.include.contains(k))
    }

    pub fn is_excluded(&self, id: &DatanodeId) -> bool {
        host_keys(id).iter().any(|k| self.exclude.contains(k))
    }

    pub fn summary(&self) -> (usize, usize) {
        (self.include.len(), self.exclude.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_match_by_address_host_or_port() {
        let lists = HostLists {
            include: parse_list("127.0.0.1:9001 # first\n  127.0.0.1:9002\n"),
            exclude: parse_list("127.0.0.1:9002"),
        };
        let id = |port| DatanodeId {
            ip_addr: "127.0.0.1".into(),
            xfer_port: port,
            ..Default::default()
        };
        assert!(lists.is_allowed(&id(9001)) && !lists.is_excluded(&id(9001)));
        assert!(lists.is_allowed(&id(9002)) && lists.is_excluded(&id(9002)));
        assert!(!lists.is_allowed(&id(9003)));
        assert!(HostLists::default().is_allowed(&id(9003)));
    }
}
