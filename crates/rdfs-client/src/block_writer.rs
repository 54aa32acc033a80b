//! Writing one block through its pipeline of datanodes: packets go to the
//! first datanode, acks come back from it (each carrying every datanode's
//! status), and packets sent but not yet acknowledged wait in the ack queue.
//! A bounded window of packets in flight keeps memory flat.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use rdfs_common::protocol::{DatanodeInfo, ExtendedBlock, LocatedBlock};
use rdfs_proto as pb;
use rdfs_proto::data_transfer_client::DataTransferClient;
use rdfs_proto::write_block_frame::Frame;
use rdfs_proto::write_block_reply::Reply;

use crate::client::DfsClient;
use crate::error::ClientError;

/// A packet sent down the pipeline and not acknowledged yet; kept whole so
/// pipeline recovery can resend it.
#[allow(dead_code)]
pub(crate) struct Unacked {
    pub seqno: i64,
    pub offset_in_block: u64,
    pub data: Bytes,
    pub checksums: Bytes,
    pub last: bool,
}

/// Why a pipeline could not be set up.
pub(crate) struct SetupFailure {
    /// The xfer address of the datanode that failed, when known.
    pub bad_node: Option<String>,
    pub error: ClientError,
}

pub(crate) struct BlockWriter {
    pub located: LocatedBlock,
    frames: mpsc::Sender<pb::WriteBlockFrame>,
    window: Arc<Semaphore>,
    queue: Arc<Mutex<VecDeque<Unacked>>>,
    /// Taken once its outcome is known; `failed` keeps a failure's text.
    acks: Option<JoinHandle<Result<(), ClientError>>>,
    failed: Option<String>,
    next_seqno: i64,
    bytes: u64,
    client: DfsClient,
}

fn addr_of(node: &DatanodeInfo) -> String {
    node.id.xfer_addr()
}

impl BlockWriter {
    /// Connects to the first datanode and sets the pipeline up.
    pub async fn open(
        client: &DfsClient,
        located: LocatedBlock,
        block_size: u64,
    ) -> Result<Self, SetupFailure> {
        let settings = client.settings().clone();
        let Some(first) = located.locations.first() else {
            return Err(SetupFailure {
                bad_node: None,
                error: ClientError::Pipeline(format!(
                    "block {} was allocated no datanodes",
                    located.block
                )),
            });
        };
        let first_addr = addr_of(first);
        let fail = |error: ClientError| SetupFailure {
            bad_node: Some(first_addr.clone()),
            error,
        };
        let channel = client.inner.datanodes.get(&first_addr).map_err(|e| {
            fail(ClientError::Transport(format!(
                "bad datanode address {first_addr}: {e}"
            )))
        })?;
        let header = pb::WriteBlockHeader {
            block: Some(
                (&ExtendedBlock {
                    num_bytes: block_size,
                    ..located.block.clone()
                })
                    .into(),
            ),
            targets: located.locations[1..].iter().map(Into::into).collect(),
            target_storage_ids: located.storage_ids.iter().skip(1).cloned().collect(),
            client_name: client.inner.client_name.clone(),
            stage: pb::PipelineStage::SetupCreate as i32,
            checksum_type: pb::ChecksumType::ChecksumCrc32c as i32,
            bytes_per_checksum: settings.bytes_per_checksum,
        };
        let (frames, frames_rx) = mpsc::channel(settings.max_packets_in_flight.min(32));
        let _ = frames
            .send(pb::WriteBlockFrame {
                frame: Some(Frame::Header(header)),
            })
            .await;
        let mut dn = DataTransferClient::new(channel)
            .max_decoding_message_size(rdfs_common::grpc::MAX_MESSAGE_SIZE);
        let mut replies = match timeout(
            settings.socket_timeout,
            dn.write_block(ReceiverStream::new(frames_rx)),
        )
        .await
        {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => {
                client.inner.datanodes.forget(&first_addr);
                return Err(fail(ClientError::from_status(status, &first_addr)));
            }
            Err(_) => {
                client.inner.datanodes.forget(&first_addr);
                return Err(fail(ClientError::Transport(format!(
                    "datanode {first_addr} did not answer within {:?}",
                    settings.socket_timeout
                ))));
            }
        };
        match timeout(settings.socket_timeout, replies.message()).await {
            Ok(Ok(Some(pb::WriteBlockReply {
                reply: Some(Reply::Setup(setup)),
            }))) => {
                if setup.status != pb::TransferStatus::Success as i32 {
                    let bad = if setup.first_bad_link.is_empty() {
                        first_addr.clone()
                    } else {
                        setup.first_bad_link.clone()
                    };
                    return Err(SetupFailure {
                        bad_node: Some(bad.clone()),
                        error: ClientError::Pipeline(format!(
                            "Bad connect ack with firstBadLink as {bad} for {}: {}",
                            located.block, setup.message
                        )),
                    });
                }
            }
            Ok(Ok(other)) => {
                return Err(fail(ClientError::Pipeline(format!(
                    "datanode {first_addr} sent {other:?} instead of a setup reply"
                ))));
            }
            Ok(Err(status)) => return Err(fail(ClientError::from_status(status, &first_addr))),
            Err(_) => {
                return Err(fail(ClientError::Transport(format!(
                    "datanode {first_addr} did not confirm the pipeline within {:?}",
                    settings.socket_timeout
                ))));
            }
        }
        let window = Arc::new(Semaphore::new(settings.max_packets_in_flight));
        let queue = Arc::new(Mutex::new(VecDeque::new()));
        let acks = tokio::spawn(read_acks(
            replies,
            Arc::clone(&window),
            Arc::clone(&queue),
            located.clone(),
            settings.socket_timeout,
        ));
        Ok(Self {
            located,
            frames,
            window,
            queue,
            acks: Some(acks),
            failed: None,
            next_seqno: 0,
            bytes: 0,
            client: client.clone(),
        })
    }

    /// Bytes sent into this block so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Sends one packet; waits while the window of unacknowledged packets is
    /// full.
    pub async fn send(
        &mut self,
        data: Bytes,
        checksums: Bytes,
        last: bool,
    ) -> Result<(), ClientError> {
        let acquired = self
            .window
            .acquire()
            .await
            .map(|permit| permit.forget())
            .is_ok();
        if !acquired {
            return Err(self.failure().await);
        }
        let seqno = self.next_seqno;
        let offset = self.bytes;
        self.next_seqno += 1;
        self.bytes += data.len() as u64;
        let packet = pb::Packet {
            seqno,
            offset_in_block: offset,
            last_packet_in_block: last,
            sync_block: false,
            data: data.clone(),
            checksums: checksums.clone(),
        };
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(Unacked {
                seqno,
                offset_in_block: offset,
                data,
                checksums,
                last,
            });
        let socket_timeout = self.client.settings().socket_timeout;
        match timeout(
            socket_timeout,
            self.frames.send(pb::WriteBlockFrame {
                frame: Some(Frame::Packet(packet)),
            }),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            _ => Err(self.failure().await),
        }
    }

    /// The error that broke the pipeline.
    async fn failure(&mut self) -> ClientError {
        self.window.close();
        let err =
            match self.acks.take() {
                Some(handle) => match handle.await {
                    Ok(Err(err)) => err,
                    Ok(Ok(())) => ClientError::Pipeline(format!(
                        "pipeline for {} closed early",
                        self.located.block
                    )),
                    Err(join) => ClientError::Pipeline(format!("ack reader failed: {join}")),
                },
                None => ClientError::Pipeline(self.failed.clone().unwrap_or_else(|| {
                    format!("pipeline for {} already failed", self.located.block)
                })),
            };
        self.failed = Some(err.to_string());
        err
    }

    /// Sends the empty last packet and waits for every ack; returns the
    /// block with its final length.
    pub async fn finish(mut self) -> Result<ExtendedBlock, ClientError> {
        self.send(Bytes::new(), Bytes::new(), true).await?;
        let Some(acks) = self.acks.take() else {
            return Err(self.failure().await);
        };
        let result = match acks.await {
            Ok(result) => result,
            Err(join) => Err(ClientError::Pipeline(format!("ack reader failed: {join}"))),
        };
        result?;
        Ok(ExtendedBlock {
            num_bytes: self.bytes,
            ..self.located.block
        })
    }
}

/// Reads acks in order, releasing window slots; any non-success status or
/// a silent pipeline ends the block with an error naming the datanode.
async fn read_acks(
    mut replies: Streaming<pb::WriteBlockReply>,
    window: Arc<Semaphore>,
    queue: Arc<Mutex<VecDeque<Unacked>>>,
    located: LocatedBlock,
    socket_timeout: std::time::Duration,
) -> Result<(), ClientError> {
    let first = located.locations.first().map(addr_of).unwrap_or_default();
    let result = loop {
        // Every wait is bounded: silence with packets outstanding is a dead
        // or stalled pipeline; silence with none outstanding is just a slow
        // writer, so keep waiting.
        let next = match timeout(socket_timeout, replies.message()).await {
            Ok(next) => next,
            Err(_) if queue.lock().unwrap_or_else(|e| e.into_inner()).is_empty() => continue,
            Err(_) => {
                break Err(ClientError::Pipeline(format!(
                    "no ack from the pipeline of {} (first datanode {first}) within {socket_timeout:?}",
                    located.block
                )));
            }
        };
        let ack = match next {
            Ok(Some(pb::WriteBlockReply {
                reply: Some(Reply::Ack(ack)),
            })) => ack,
            Ok(Some(other)) => {
                break Err(ClientError::Pipeline(format!(
                    "unexpected reply from {first}: {other:?}"
                )));
            }
            Ok(None) => {
                break Err(ClientError::Pipeline(format!(
                    "datanode {first} closed the pipeline of {} before acknowledging every packet",
                    located.block
                )));
            }
            Err(status) => break Err(ClientError::from_status(status, &first)),
        };
        if let Some((index, status)) = ack
            .replies
            .iter()
            .enumerate()
            .find(|(_, s)| **s != pb::TransferStatus::Success as i32)
        {
            let node = located
                .locations
                .get(index)
                .map(addr_of)
                .unwrap_or_else(|| format!("#{index}"));
            let name = pb::TransferStatus::try_from(*status)
                .map_or_else(|_| status.to_string(), |s| s.as_str_name().to_string());
            break Err(ClientError::Pipeline(format!(
                "Bad response {name} for block {} from datanode {node}: {}",
                located.block, ack.message
            )));
        }
        let front = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
        match front {
            Some(packet) if packet.seqno == ack.seqno => {
                window.add_permits(1);
                if packet.last {
                    break Ok(());
                }
            }
            Some(packet) => {
                break Err(ClientError::Pipeline(format!(
                    "datanode {first} acknowledged packet {} while {} was expected",
                    ack.seqno, packet.seqno
                )));
            }
            None => {
                break Err(ClientError::Pipeline(format!(
                    "datanode {first} acknowledged packet {} that was never sent",
                    ack.seqno
                )));
            }
        }
    };
    if result.is_err() {
        window.close();
    }
    result
}
