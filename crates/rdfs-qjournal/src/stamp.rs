//! Which namespace a journal belongs to: fixed when the journal is
//! formatted, checked whenever a namenode takes an epoch, so a namenode of
//! one cluster can never write into another's journal.

use std::collections::BTreeMap;

use rdfs_proto::NamespaceStampProto;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceStamp {
    pub cluster_id: String,
    pub namespace_id: u32,
    pub block_pool_id: String,
}

impl NamespaceStamp {
    pub(crate) fn to_proto(&self) -> NamespaceStampProto {
        NamespaceStampProto {
            cluster_id: self.cluster_id.clone(),
            namespace_id: self.namespace_id,
            block_pool_id: self.block_pool_id.clone(),
        }
    }

    pub(crate) fn from_proto(proto: &NamespaceStampProto) -> Self {
        Self {
            cluster_id: proto.cluster_id.clone(),
            namespace_id: proto.namespace_id,
            block_pool_id: proto.block_pool_id.clone(),
        }
    }

    /// Why a journal with this stamp refuses a namenode with `theirs`.
    pub(crate) fn mismatch(&self, theirs: &Self) -> Option<String> {
        if self.cluster_id != theirs.cluster_id {
            Some(format!(
                "journal formatted for cluster {}, the namenode belongs to {}",
                self.cluster_id, theirs.cluster_id
            ))
        } else if self.namespace_id != theirs.namespace_id {
            Some(format!(
                "journal formatted for namespace {}, the namenode's is {}",
                self.namespace_id, theirs.namespace_id
            ))
        } else if self.block_pool_id != theirs.block_pool_id {
            Some(format!(
                "journal formatted for block pool {}, the namenode's is {}",
                self.block_pool_id, theirs.block_pool_id
            ))
        } else {
            None
        }
    }

    /// What a stamp must have before a journal is formatted with it.
    pub(crate) fn invalid(&self) -> Option<&'static str> {
        if self.cluster_id.is_empty() {
            Some("the cluster id is empty")
        } else if self.namespace_id == 0 {
            Some("the namespace id is 0")
        } else if self.block_pool_id.is_empty() {
            Some("the block pool id is empty")
        } else {
            None
        }
    }

    /// The journal's VERSION file, in HDFS's key names.
    pub(crate) fn render_version(&self) -> String {
        rdfs_common::version_file::render(
            "rdfs journal storage",
            &[
                ("clusterID", self.cluster_id.clone()),
                ("namespaceID", self.namespace_id.to_string()),
                ("blockpoolID", self.block_pool_id.clone()),
                ("storageType", "JOURNAL_NODE".to_string()),
            ],
        )
    }

    pub(crate) fn parse_version(text: &str) -> Result<Self, String> {
        let pairs: BTreeMap<String, String> = rdfs_common::version_file::parse(text);
        let get = |key: &str| {
            pairs
                .get(key)
                .cloned()
                .ok_or_else(|| format!("no {key} in VERSION"))
        };
        let namespace_id = get("namespaceID")?;
        Ok(Self {
            cluster_id: get("clusterID")?,
            namespace_id: namespace_id
                .parse()
                .map_err(|_| format!("namespaceID '{namespace_id}' is not a number"))?,
            block_pool_id: get("blockpoolID")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_round_trips_and_mismatches_are_named() {
        let stamp = NamespaceStamp {
            cluster_id: "CID-a".into(),
            namespace_id: 7,
            block_pool_id: "BP-7".into(),
        };
        let back = NamespaceStamp::parse_version(&stamp.render_version()).expect("parses");
        assert_eq!(back, stamp);
        let other = NamespaceStamp {
            cluster_id: "CID-b".into(),
            ..stamp.clone()
        };
        assert_eq!(
            stamp.mismatch(&other).as_deref(),
            Some("journal formatted for cluster CID-a, the namenode belongs to CID-b")
        );
        assert!(stamp.mismatch(&stamp).is_none());
    }
}
