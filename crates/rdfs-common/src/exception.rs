//! The kinds of failure that cross the wire, named after the HDFS exceptions
//! they stand for, so that a Hadoop front door can send the Java class name a
//! Hadoop client expects and the rdfs client can branch on them.
//!
//! On gRPC a failure is a `Status` whose `x-rdfs-exception` metadata holds
//! [`ExceptionKind::name`] and whose message is the human-readable text.

use std::fmt;

/// The metadata key that carries the exception kind of a failed call.
pub const EXCEPTION_METADATA_KEY: &str = "x-rdfs-exception";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExceptionKind {
    FileNotFound,
    FileAlreadyExists,
    ParentNotDirectory,
    PathIsNotEmptyDirectory,
    InvalidPath,
    AccessControl,
    SafeMode,
    NotReplicatedYet,
    AlreadyBeingCreated,
    LeaseExpired,
    /// The file's lease or block is being recovered; try again later.
    RecoveryInProgress,
    IllegalArgument,
    /// No datanode could take a block.
    NotEnoughReplicas,
    /// A datanode registering for a different cluster or block pool.
    IncorrectVersion,
    /// The namenode does not know the calling datanode.
    UnregisteredNode,
    /// A datanode the host files do not allow to register.
    DisallowedDatanode,
    /// A replica whose bytes on disk are damaged or incomplete.
    CorruptReplica,
    ReplicaNotFound,
    /// An ACL change HDFS refuses, or ACLs turned off.
    Acl,
    /// A datanode refused a block operation's access token: none, forged,
    /// for another block, or expired (a reader then fetches a new one).
    InvalidBlockToken,
    Standby,
    Retriable,
    /// Any other I/O failure.
    Io,
}

impl ExceptionKind {
    const ALL: [ExceptionKind; 23] = [
        Self::FileNotFound,
        Self::FileAlreadyExists,
        Self::ParentNotDirectory,
        Self::PathIsNotEmptyDirectory,
        Self::InvalidPath,
        Self::AccessControl,
        Self::SafeMode,
        Self::NotReplicatedYet,
        Self::AlreadyBeingCreated,
        Self::LeaseExpired,
        Self::RecoveryInProgress,
        Self::IllegalArgument,
        Self::NotEnoughReplicas,
        Self::IncorrectVersion,
        Self::UnregisteredNode,
        Self::DisallowedDatanode,
        Self::CorruptReplica,
        Self::ReplicaNotFound,
        Self::Acl,
        Self::InvalidBlockToken,
        Self::Standby,
        Self::Retriable,
        Self::Io,
    ];

    /// The fully qualified Java class HDFS throws for this failure.
    pub fn java_class(self) -> &'static str {
        match self {
            Self::FileNotFound => "java.io.FileNotFoundException",
            Self::FileAlreadyExists => "org.apache.hadoop.fs.FileAlreadyExistsException",
            Self::ParentNotDirectory => "org.apache.hadoop.fs.ParentNotDirectoryException",
            Self::PathIsNotEmptyDirectory => {
                "org.apache.hadoop.fs.PathIsNotEmptyDirectoryException"
            }
            Self::InvalidPath => "org.apache.hadoop.fs.InvalidPathException",
            Self::AccessControl => "org.apache.hadoop.security.AccessControlException",
            Self::SafeMode => "org.apache.hadoop.hdfs.server.namenode.SafeModeException",
            Self::NotReplicatedYet => {
                "org.apache.hadoop.hdfs.server.namenode.NotReplicatedYetException"
            }
            Self::RecoveryInProgress => {
                "org.apache.hadoop.hdfs.protocol.RecoveryInProgressException"
            }
            Self::AlreadyBeingCreated => {
                "org.apache.hadoop.hdfs.protocol.AlreadyBeingCreatedException"
            }
            Self::LeaseExpired => "org.apache.hadoop.hdfs.server.namenode.LeaseExpiredException",
            Self::IllegalArgument => "java.lang.IllegalArgumentException",
            Self::NotEnoughReplicas => "java.io.IOException",
            Self::IncorrectVersion => {
                "org.apache.hadoop.hdfs.server.common.IncorrectVersionException"
            }
            Self::UnregisteredNode => "org.apache.hadoop.hdfs.protocol.UnregisteredNodeException",
            Self::DisallowedDatanode => {
                "org.apache.hadoop.hdfs.server.protocol.DisallowedDatanodeException"
            }
            Self::CorruptReplica => "org.apache.hadoop.fs.ChecksumException",
            Self::ReplicaNotFound => {
                "org.apache.hadoop.hdfs.server.datanode.ReplicaNotFoundException"
            }
            Self::Acl => "org.apache.hadoop.hdfs.protocol.AclException",
            Self::InvalidBlockToken => {
                "org.apache.hadoop.hdfs.security.token.block.InvalidBlockTokenException"
            }
            Self::Standby => "org.apache.hadoop.ipc.StandbyException",
            Self::Retriable => "org.apache.hadoop.ipc.RetriableException",
            Self::Io => "java.io.IOException",
        }
    }

    /// The short name sent in `x-rdfs-exception`.
    pub fn name(self) -> &'static str {
        match self {
            Self::FileNotFound => "FileNotFoundException",
            Self::FileAlreadyExists => "FileAlreadyExistsException",
            Self::ParentNotDirectory => "ParentNotDirectoryException",
            Self::PathIsNotEmptyDirectory => "PathIsNotEmptyDirectoryException",
            Self::InvalidPath => "InvalidPathException",
            Self::AccessControl => "AccessControlException",
            Self::SafeMode => "SafeModeException",
            Self::NotReplicatedYet => "NotReplicatedYetException",
            Self::AlreadyBeingCreated => "AlreadyBeingCreatedException",
            Self::RecoveryInProgress => "RecoveryInProgressException",
            Self::LeaseExpired => "LeaseExpiredException",
            Self::IllegalArgument => "IllegalArgumentException",
            Self::NotEnoughReplicas => "NotEnoughReplicasException",
            Self::IncorrectVersion => "IncorrectVersionException",
            Self::UnregisteredNode => "UnregisteredNodeException",
            Self::DisallowedDatanode => "DisallowedDatanodeException",
            Self::CorruptReplica => "CorruptReplicaException",
            Self::ReplicaNotFound => "ReplicaNotFoundException",
            Self::Acl => "AclException",
            Self::InvalidBlockToken => "InvalidBlockTokenException",
            Self::Standby => "StandbyException",
            Self::Retriable => "RetriableException",
            Self::Io => "IOException",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }

    fn grpc_code(self) -> tonic::Code {
        use tonic::Code;
        match self {
            Self::FileNotFound | Self::ReplicaNotFound => Code::NotFound,
            Self::FileAlreadyExists | Self::AlreadyBeingCreated => Code::AlreadyExists,
            Self::ParentNotDirectory
            | Self::PathIsNotEmptyDirectory
            | Self::SafeMode
            | Self::NotReplicatedYet
            | Self::LeaseExpired
            | Self::RecoveryInProgress
            | Self::IncorrectVersion
            | Self::UnregisteredNode => Code::FailedPrecondition,
            Self::InvalidPath | Self::IllegalArgument | Self::Acl => Code::InvalidArgument,
            Self::AccessControl | Self::DisallowedDatanode | Self::InvalidBlockToken => {
                Code::PermissionDenied
            }
            Self::NotEnoughReplicas => Code::ResourceExhausted,
            Self::CorruptReplica => Code::DataLoss,
            Self::Standby | Self::Retriable => Code::Unavailable,
            Self::Io => Code::Internal,
        }
    }

    /// A gRPC status carrying this kind and message.
    pub fn status(self, message: impl Into<String>) -> tonic::Status {
        let mut status = tonic::Status::new(self.grpc_code(), message);
        status.metadata_mut().insert(
            EXCEPTION_METADATA_KEY,
            tonic::metadata::MetadataValue::from_static(self.name()),
        );
        status
    }

    /// The kind a failed call carried, if the peer set one.
    pub fn of_status(status: &tonic::Status) -> Option<Self> {
        status
            .metadata()
            .get(EXCEPTION_METADATA_KEY)
            .and_then(|value| value.to_str().ok())
            .and_then(Self::from_name)
    }
}

impl fmt::Display for ExceptionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_a_status() {
        for kind in ExceptionKind::ALL {
            let status = kind.status("why");
            assert_eq!(ExceptionKind::of_status(&status), Some(kind));
            assert_eq!(status.message(), "why");
        }
        assert_eq!(
            ExceptionKind::of_status(&tonic::Status::internal("x")),
            None
        );
    }
}
