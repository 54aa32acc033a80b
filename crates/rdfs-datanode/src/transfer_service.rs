//! The `DataTransfer` gRPC service: block writes (the pipeline), reads
//! (replicas being written up to their visible length), visible lengths,
//! and copies of a replica being written to a datanode joining its
//! pipeline.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use rdfs_common::block_token::AccessMode;
use rdfs_common::protocol::ExtendedBlock;
use rdfs_proto as pb;
use rdfs_proto::data_transfer_server::DataTransfer;
use rdfs_proto::write_block_frame::Frame;

use crate::context::DatanodeContext;
use crate::error::DatanodeError;
use crate::pipeline;
use crate::replicate::{self, Order, TransferError};
use crate::sender::BlockSender;

pub struct TransferService {
    ctx: Arc<DatanodeContext>,
}

impl TransferService {
    pub fn new(ctx: Arc<DatanodeContext>) -> Self {
        Self { ctx }
    }
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<pb::WriteBlockReply, Status>> + Send>>;
type ReadStream = Pin<Box<dyn Stream<Item = Result<pb::ReadPacket, Status>> + Send>>;

#[tonic::async_trait]
impl DataTransfer for TransferService {
    type WriteBlockStream = ReplyStream;
    type ReadBlockStream = ReadStream;

    async fn write_block(
        &self,
        request: Request<Streaming<pb::WriteBlockFrame>>,
    ) -> Result<Response<ReplyStream>, Status> {
        let mut upstream = request.into_inner();
        let header = match timeout(self.ctx.socket_timeout, upstream.message()).await {
            Ok(Ok(Some(pb::WriteBlockFrame {
                frame: Some(Frame::Header(header)),
            }))) => header,
            Ok(Ok(_)) => {
                return Err(Status::invalid_argument(
                    "the first frame of WriteBlock must be its header",
                ));
            }
            Ok(Err(status)) => return Err(status),
            Err(_) => {
                return Err(Status::deadline_exceeded(
                    "no WriteBlock header arrived in time",
                ));
            }
        };
        if let Some(block) = header.block.clone() {
            self.ctx.block_access.check(
                header.block_token.as_ref(),
                &block.into(),
                AccessMode::Write,
                "WRITE_BLOCK",
            )?;
        }
        let (replies, replies_rx) = mpsc::channel(64);
        tokio::spawn(pipeline::run(
            Arc::clone(&self.ctx),
            header,
            upstream,
            replies,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(replies_rx))))
    }

    async fn get_replica_visible_length(
        &self,
        request: Request<pb::GetReplicaVisibleLengthRequest>,
    ) -> Result<Response<pb::GetReplicaVisibleLengthResponse>, Status> {
        let req = request.into_inner();
        let block = ExtendedBlock::from(req.block.ok_or_else(|| {
            rdfs_common::ExceptionKind::IllegalArgument
                .status("GetReplicaVisibleLength without a block")
        })?);
        self.ctx.dataset.check_pool(&block.pool_id)?;
        self.ctx.block_access.check(
            req.block_token.as_ref(),
            &block,
            AccessMode::Read,
            "GET_REPLICA_VISIBLE_LENGTH",
        )?;
        let length = self.ctx.dataset.visible_length(&block)?;
        Ok(Response::new(pb::GetReplicaVisibleLengthResponse {
            length,
        }))
    }

    async fn transfer_block(
        &self,
        request: Request<pb::TransferBlockRequest>,
    ) -> Result<Response<pb::TransferBlockResponse>, Status> {
        let req = request.into_inner();
        let block = ExtendedBlock::from(req.block.ok_or_else(|| {
            rdfs_common::ExceptionKind::IllegalArgument.status("TransferBlock without a block")
        })?);
        self.ctx.dataset.check_pool(&block.pool_id)?;
        self.ctx.block_access.check(
            req.block_token.as_ref(),
            &block,
            AccessMode::Copy,
            "TRANSFER_BLOCK",
        )?;
        if req.targets.is_empty() {
            return Err(
                rdfs_common::ExceptionKind::IllegalArgument.status("TransferBlock without targets")
            );
        }
        let _transfer = self.ctx.transfer();
        let order = Order {
            block: block.clone(),
            targets: req.targets,
            target_storage_ids: req.target_storage_ids,
            balancing: false,
            stage: pb::PipelineStage::TransferRbw,
            client_name: req.client_name,
        };
        match replicate::transfer(Arc::clone(&self.ctx), order).await {
            Ok(bytes) => {
                tracing::info!(block = %block, bytes, "copied a replica being written to a new pipeline member");
                Ok(Response::new(pb::TransferBlockResponse {}))
            }
            Err(err) => {
                tracing::warn!(block = %block, error = %err, "copy of a replica being written failed");
                Err(match err {
                    TransferError::Source(err) => err.into(),
                    TransferError::LengthMismatch { .. } | TransferError::NoTargets => {
                        rdfs_common::ExceptionKind::IllegalArgument.status(err.to_string())
                    }
                    TransferError::Target { .. } => {
                        rdfs_common::ExceptionKind::Io.status(err.to_string())
                    }
                })
            }
        }
    }

    async fn read_block(
        &self,
        request: Request<pb::ReadBlockRequest>,
    ) -> Result<Response<ReadStream>, Status> {
        let req = request.into_inner();
        let block = ExtendedBlock::from(req.block.ok_or_else(|| {
            rdfs_common::ExceptionKind::IllegalArgument.status("ReadBlock without a block")
        })?);
        self.ctx.dataset.check_pool(&block.pool_id)?;
        self.ctx.block_access.check(
            req.block_token.as_ref(),
            &block,
            AccessMode::Read,
            "READ_BLOCK",
        )?;
        let dataset = Arc::clone(&self.ctx.dataset);
        let opened = {
            let block = block.clone();
            tokio::task::spawn_blocking(move || {
                dataset
                    .open_for_read(&block)
                    .and_then(|reader| BlockSender::new(reader, req.offset, req.length))
            })
            .await
            .map_err(|e| Status::internal(format!("read setup panicked: {e}")))?
        };
        let mut sender = match opened {
            Ok(sender) => sender,
            Err(err) => {
                self.report_if_corrupt(&block, &err);
                return Err(err.into());
            }
        };
        let (tx, rx) = mpsc::channel(4);
        let ctx = Arc::clone(&self.ctx);
        tokio::task::spawn_blocking(move || {
            let _transfer = ctx.transfer();
            let runtime = tokio::runtime::Handle::current();
            let bpc = sender.bytes_per_checksum();
            while let Some(next) = sender.next_chunk() {
                let item = match next {
                    Ok(chunk) => Ok(pb::ReadPacket {
                        offset_in_block: chunk.offset_in_block,
                        data: chunk.data,
                        checksums: chunk.checksums,
                        bytes_per_checksum: bpc,
                    }),
                    Err(err) => {
                        // The disk may be failing rather than the replica;
                        // a failed volume's replicas are reported lost
                        // instead of corrupt.
                        if let Some(info) = ctx.dataset.replica(block.block_id) {
                            ctx.dataset.check_volume(info.volume, &err);
                        }
                        report_corrupt(&ctx, &block, &err);
                        Err(Status::from(err))
                    }
                };
                let failed = item.is_err();
                // A reader that stops reading must not hold this thread forever.
                let sent = runtime.block_on(timeout(ctx.socket_timeout, tx.send(item)));
                if failed || !matches!(sent, Ok(Ok(()))) {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

impl TransferService {
    fn report_if_corrupt(&self, block: &ExtendedBlock, err: &DatanodeError) {
        report_corrupt(&self.ctx, block, err);
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
