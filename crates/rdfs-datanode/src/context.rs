//! What every part of a running datanode shares.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rdfs_common::grpc::ChannelCache;
use rdfs_transfer::{GrpcMirror, StreamOptions};

use crate::block_access::BlockAccess;
use crate::dataset::Dataset;
use crate::reports::Reports;
use crate::throttle::Throttle;

pub struct DatanodeContext {
    pub dataset: Arc<Dataset>,
    pub reports: Arc<Reports>,
    pub channels: Arc<ChannelCache>,
    /// Opens pipelines to the next datanode of a write, over `channels`.
    pub mirror: Arc<GrpcMirror>,
    /// Bound on any single network wait.
    pub socket_timeout: Duration,
    /// Block transfers in progress (HDFS's xceiver count).
    pub transfers: Arc<AtomicU32>,
    /// Replica copies to other datanodes in progress (HDFS's xmits).
    pub xmits: Arc<AtomicU32>,
    /// Shared by all balancer moves, so together they stay within the
    /// balance bandwidth.
    pub balance_throttle: parking_lot::Mutex<Throttle>,
    /// Blocks whose recovery this datanode leads now, so a repeated
    /// command does not start a second one.
    pub recovering: parking_lot::Mutex<HashSet<i64>>,
    /// Block access tokens: checked on every block operation, signed for
    /// this datanode's own copies.
    pub block_access: BlockAccess,
}

/// Packets queued towards a mirror.
const MIRROR_QUEUE: usize = 16;

/// The mirror of every write session: gRPC pipelines over `channels`.
pub fn grpc_mirror(channels: &Arc<ChannelCache>, socket_timeout: Duration) -> Arc<GrpcMirror> {
    Arc::new(GrpcMirror {
        channels: Arc::clone(channels),
        options: StreamOptions {
            socket_timeout,
            queue: MIRROR_QUEUE,
        },
    })
}

/// Counts a transfer for as long as it lives.
pub struct TransferGuard(Arc<AtomicU32>);

impl DatanodeContext {
    pub fn transfer(&self) -> TransferGuard {
        self.transfers.fetch_add(1, Ordering::Relaxed);
        TransferGuard(Arc::clone(&self.transfers))
    }

    pub fn xmit(&self) -> TransferGuard {
        self.xmits.fetch_add(1, Ordering::Relaxed);
        TransferGuard(Arc::clone(&self.xmits))
    }
}

impl Drop for TransferGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
