//! Which rack each datanode is on, from a table file as Hadoop's
//! `TableMapping` reads it (`net.topology.table.file.name`): one
//! `host-or-ip[:port] /rack` per line. Datanodes it does not name are on
//! [`DEFAULT_RACK`]. A port lets several datanodes on one host (local
//! clusters, tests) sit on different racks.

use std::collections::HashMap;
use std::path::Path;

use rdfs_common::protocol::DatanodeId;

pub const DEFAULT_RACK: &str = "/default-rack";

#[derive(Debug, Clone, Default)]
pub struct Topology {
    racks: HashMap<String, String>,
}

impl Topology {
    /// Reads the table at `path`; an empty path means one default rack.
    pub fn load(path: &str) -> Result<Self, String> {
        if path.is_empty() {
            return Ok(Self::default());
        }
        let text = std::fs::read_to_string(Path::new(path))
            .map_err(|e| format!("cannot read topology file {path}: {e}"))?;
        Self::parse(&text).map_err(|e| format!("topology file {path}: {e}"))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let mut racks = HashMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(host), Some(rack), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(format!(
                    "line {}: expected `host /rack`, found `{line}`",
                    number + 1
                ));
            };
            if !rack.starts_with('/') || rack.len() < 2 {
                return Err(format!(
                    "line {}: rack `{rack}` must be a path such as /dc1/rack1",
                    number + 1
                ));
            }
            racks.insert(host.to_string(), rack.trim_end_matches('/').to_string());
        }
        Ok(Self { racks })
    }

    /// The rack of a datanode: the most specific entry naming it.
    pub fn resolve(&self, id: &DatanodeId) -> String {
        host_keys(id)
            .iter()
            .find_map(|key| self.racks.get(key))
            .cloned()
            .unwrap_or_else(|| DEFAULT_RACK.to_string())
    }
}

/// The names a host file or topology table may use for a datanode, most
/// specific first.
pub fn host_keys(id: &DatanodeId) -> Vec<String> {
    let mut keys = vec![format!("{}:{}", id.ip_addr, id.xfer_port)];
    if !id.hostname.is_empty() {
        keys.push(format!("{}:{}", id.hostname, id.xfer_port));
    }
    keys.push(id.ip_addr.clone());
    if !id.hostname.is_empty() {
        keys.push(id.hostname.clone());
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ip: &str, port: u16) -> DatanodeId {
        DatanodeId {
            ip_addr: ip.into(),
            hostname: "node".into(),
            xfer_port: port,
            ..Default::default()
        }
    }

    #[test]
    fn most_specific_entry_wins() {
        let topology =
            Topology::parse("# racks\n127.0.0.1 /r1\n127.0.0.1:9002 /r2/\n\n10.0.0.5 /dc/r3\n")
                .expect("parses");
        assert_eq!(topology.resolve(&id("127.0.0.1", 9001)), "/r1");
        assert_eq!(topology.resolve(&id("127.0.0.1", 9002)), "/r2");
        assert_eq!(topology.resolve(&id("10.0.0.5", 1)), "/dc/r3");
        assert_eq!(topology.resolve(&id("10.0.0.6", 1)), DEFAULT_RACK);
        assert!(Topology::parse("host rack").is_err());
        assert!(Topology::parse("host").is_err());
    }
}
