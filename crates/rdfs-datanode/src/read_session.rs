//! Serving a read of a replica, whatever transport carries it: the block
//! token is checked, the replica opened (a replica found damaged is
//! reported to the namenode), and its range streamed as packets of whole
//! chunks with their stored checksums. A read error part-way is reported
//! too, as a corrupt replica or, when the disk is what failed, a failing
//! volume.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::timeout;

use rdfs_common::block_token::AccessMode;
use rdfs_common::protocol::ExtendedBlock;
use rdfs_transfer::{ReadPacket, ReadRequest};

use crate::context::DatanodeContext;
use crate::error::DatanodeError;
use crate::sender::BlockSender;

/// Packets read ahead of the transport.
const READ_AHEAD: usize = 4;

/// An open read of one replica.
pub struct ReadSession {
    ctx: Arc<DatanodeContext>,
    block: ExtendedBlock,
    sender: BlockSender,
}

impl ReadSession {
    /// Checks the request and opens the replica.
    pub async fn open(
        ctx: &Arc<DatanodeContext>,
        request: ReadRequest,
    ) -> Result<Self, DatanodeError> {
        let block = request.block;
        ctx.dataset.check_pool(&block.pool_id)?;
        ctx.block_access
            .check(&request.token, &block, AccessMode::Read, "READ_BLOCK")?;
        let opened = {
            let dataset = Arc::clone(&ctx.dataset);
            let block = block.clone();
            let (offset, length) = (request.offset, request.length);
            tokio::task::spawn_blocking(move || {
                dataset
                    .open_for_read(&block)
                    .and_then(|reader| BlockSender::new(reader, offset, length))
            })
            .await
            .map_err(|e| DatanodeError::InvalidRequest(format!("read setup panicked: {e}")))?
        };
        match opened {
            Ok(sender) => Ok(Self {
                ctx: Arc::clone(ctx),
                block,
                sender,
            }),
            Err(err) => {
                report_corrupt(ctx, &block, &err);
                Err(err)
            }
        }
    }

    /// The next packet, or `None` once the range is sent. Blocking.
    pub fn next_packet(&mut self) -> Option<Result<ReadPacket, DatanodeError>> {
        let checksum = self.sender.checksum();
        let next = self.sender.next_chunk()?;
        Some(match next {
            Ok(chunk) => Ok(ReadPacket {
                offset_in_block: chunk.offset_in_block,
                data: chunk.data,
                checksums: chunk.checksums,
                checksum,
            }),
            Err(err) => {
                // The disk may be failing rather than the replica; a failed
                // volume's replicas are reported lost instead of corrupt.
                if let Some(info) = self.ctx.dataset.replica(self.block.block_id) {
                    self.ctx.dataset.check_volume(info.volume, &err);
                }
                report_corrupt(&self.ctx, &self.block, &err);
                Err(err)
            }
        })
    }

    /// Streams every packet from a blocking thread, a few ahead of the
    /// transport. A reader that stops taking them for the socket timeout
    /// ends the stream, so no thread is held forever; so does an error,
    /// sent last.
    pub fn stream(mut self) -> mpsc::Receiver<Result<ReadPacket, DatanodeError>> {
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        tokio::task::spawn_blocking(move || {
            let _transfer = self.ctx.transfer();
            let runtime = tokio::runtime::Handle::current();
            let socket_timeout = self.ctx.socket_timeout;
            while let Some(item) = self.next_packet() {
                let failed = item.is_err();
                let sent = runtime.block_on(timeout(socket_timeout, tx.send(item)));
                if failed || !matches!(sent, Ok(Ok(()))) {
                    break;
                }
            }
        });
        rx
    }
}

/// Tells the namenode about a replica found damaged while serving it (once
/// per replica: the scanners may have found it first). Does not block.
pub(crate) fn report_corrupt(ctx: &DatanodeContext, block: &ExtendedBlock, err: &DatanodeError) {
    if let DatanodeError::CorruptReplica { reason, .. } = err
        && let Some(info) = ctx.dataset.replica(block.block_id)
    {
        ctx.dataset.report_corrupt(block.block_id, &info, reason);
    }
}
