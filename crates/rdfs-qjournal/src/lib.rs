//! The quorum journal (QJM, as HDFS-3077 describes it): the `rdfs
//! journalnode` daemon that stores edit log segments, and the quorum client
//! a namenode writes edits through and a standby tails them from.

pub mod segment;
