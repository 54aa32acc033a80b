//! Datasets on temporary directories for the crate's unit tests.

use std::path::{Path, PathBuf};

use rdfs_common::protocol::ExtendedBlock;

use crate::dataset::Dataset;
use crate::volume::Volume;

pub const POOL: &str = "BP-1";

/// A dataset over `count` fresh volumes under `root`, attached to [`POOL`].
pub fn dataset(root: &Path, count: usize) -> Dataset {
    let volumes = (0..count)
        .map(|i| Volume::open(i, &root.join(format!("v{i}")), 0).expect("volume"))
        .collect();
    let dataset = Dataset::new(volumes, 0, false);
    dataset.attach_pool("CID-1", POOL, 1, "uuid").expect("pool");
    dataset
}

pub fn block(block_id: i64) -> ExtendedBlock {
    ExtendedBlock {
        pool_id: POOL.into(),
        block_id,
        generation_stamp: 1001,
        num_bytes: 0,
    }
}

/// A packet of `data` at `offset`, with its CRC32C checksums.
pub fn packet(seqno: i64, offset: u64, data: &[u8]) -> rdfs_transfer::Packet {
    rdfs_transfer::Packet {
        seqno,
        offset_in_block: offset,
        last_packet_in_block: false,
        sync_block: false,
        data: bytes::Bytes::copy_from_slice(data),
        checksums: bytes::Bytes::from(crate::replica::packet_checksums(data, offset, 512)),
    }
}

/// The checksum tests write with.
pub const CRC32C_512: rdfs_common::checksum::DataChecksum =
    rdfs_common::checksum::DataChecksum::crc32c(512);

/// Writes and finalizes a replica of `len` bytes derived from its id.
pub fn write_replica(dataset: &Dataset, block_id: i64, len: usize) -> ExtendedBlock {
    let block = block(block_id);
    let mut writer = dataset
        .create_rbw(&block, crate::test_support::CRC32C_512, 1 << 20, false)
        .expect("rbw");
    let data: Vec<u8> = (0..len).map(|i| (i as i64 + block_id) as u8).collect();
    writer
        .write(&data, &crate::test_support::CRC32C_512.compute(&data))
        .expect("write");
    dataset.finalize(writer).expect("finalize");
    ExtendedBlock {
        num_bytes: len as u64,
        ..block
    }
}

/// A replica's block and meta files.
pub fn files(dataset: &Dataset, block_id: i64) -> (PathBuf, PathBuf) {
    let info = dataset.replica(block_id).expect("replica");
    dataset.replica_paths(block_id, &info).expect("paths")
}

/// A context over `dataset` as a datanode daemon would build it.
pub fn context(
    dataset: Dataset,
    socket_timeout: std::time::Duration,
) -> std::sync::Arc<crate::context::DatanodeContext> {
    use std::sync::Arc;
    use std::sync::atomic::AtomicU32;
    let dataset = Arc::new(dataset);
    let channels = Arc::new(rdfs_common::grpc::ChannelCache::new(socket_timeout));
    Arc::new(crate::context::DatanodeContext {
        reports: dataset.reports(),
        dataset,
        mirror: crate::context::grpc_mirror(&channels, socket_timeout),
        channels,
        socket_timeout,
        transfers: Arc::new(AtomicU32::new(0)),
        xmits: Arc::new(AtomicU32::new(0)),
        balance_throttle: parking_lot::Mutex::new(crate::throttle::Throttle::new(0)),
        recovering: parking_lot::Mutex::new(Default::default()),
        block_access: crate::block_access::BlockAccess::new(false),
    })
}

/// Serves the datanode's gRPC services for `ctx` on an ephemeral loopback
/// port until `stop` is cancelled; returns the address.
pub async fn serve(
    ctx: std::sync::Arc<crate::context::DatanodeContext>,
    stop: tokio_util::sync::CancellationToken,
) -> std::net::SocketAddr {
    use rdfs_proto::inter_datanode_server::InterDatanodeServer;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = rdfs_common::grpc::server()
        .add_service(crate::transfer_service::DataTransferService::new(
            std::sync::Arc::clone(&ctx),
        ))
        .add_service(InterDatanodeServer::new(
            crate::recovery_service::RecoveryService::new(ctx),
        ))
        .serve_with_incoming_shutdown(rdfs_common::grpc::incoming(listener), async move {
            stop.cancelled().await
        });
    tokio::spawn(server);
    addr
}

/// A datanode in a pipeline, as a header names it.
pub fn datanode_info(addr: std::net::SocketAddr, uuid: &str) -> rdfs_proto::DatanodeInfo {
    rdfs_proto::DatanodeInfo {
        id: Some(rdfs_proto::DatanodeId {
            ip_addr: addr.ip().to_string(),
            hostname: "localhost".into(),
            datanode_uuid: uuid.into(),
            xfer_port: u32::from(addr.port()),
            info_port: 0,
            ipc_port: 0,
        }),
        ..Default::default()
    }
}

/// `len` bytes that differ from block to block.
pub fn data(seed: i64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as i64 * 7 + seed) as u8).collect()
}
