//! The gRPC codec of the data-transfer types: conversions between the
//! plain types and `rdfs.DataTransfer`'s messages. Every conversion from
//! the wire is checked, so a malformed frame becomes an error naming what
//! was wrong, never a panic or a silent default.

use rdfs_common::checksum::{ChecksumKind, DEFAULT_BYTES_PER_CHECKSUM, DataChecksum};
use rdfs_common::protocol::{token_from_proto, token_to_proto};
use rdfs_proto as pb;
use rdfs_proto::write_block_frame::Frame;
use rdfs_proto::write_block_reply::Reply;

use crate::packet::{Ack, Packet, Status};
use crate::setup::{ReadPacket, ReadRequest, SetupReply, Stage, WriteSetup};

/// A frame or field that does not make sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {what}: {why}")]
pub struct Malformed {
    pub what: &'static str,
    pub why: String,
}

fn malformed(what: &'static str, why: impl Into<String>) -> Malformed {
    Malformed {
        what,
        why: why.into(),
    }
}

pub fn status_to_pb(status: Status) -> pb::TransferStatus {
    match status {
        Status::Success => pb::TransferStatus::Success,
        Status::Error => pb::TransferStatus::Error,
        Status::ErrorChecksum => pb::TransferStatus::ErrorChecksum,
        Status::ErrorInvalid => pb::TransferStatus::ErrorInvalid,
        Status::ErrorExists => pb::TransferStatus::ErrorExists,
    }
}

/// Unknown values read as a plain error: a newer peer's failure is still a
/// failure.
pub fn status_from_pb(status: i32) -> Status {
    match pb::TransferStatus::try_from(status) {
        Ok(pb::TransferStatus::Success) => Status::Success,
        Ok(pb::TransferStatus::ErrorChecksum) => Status::ErrorChecksum,
        Ok(pb::TransferStatus::ErrorInvalid) => Status::ErrorInvalid,
        Ok(pb::TransferStatus::ErrorExists) => Status::ErrorExists,
        Ok(pb::TransferStatus::Error) | Err(_) => Status::Error,
    }
}

fn stage_to_pb(stage: Stage) -> pb::PipelineStage {
    match stage {
        Stage::SetupCreate => pb::PipelineStage::SetupCreate,
        Stage::TransferFinalized => pb::PipelineStage::TransferFinalized,
        Stage::SetupAppend => pb::PipelineStage::SetupAppend,
        Stage::SetupStreamingRecovery => pb::PipelineStage::SetupStreamingRecovery,
        Stage::TransferRbw => pb::PipelineStage::TransferRbw,
    }
}

fn stage_from_pb(stage: i32) -> Result<Stage, Malformed> {
    Ok(
        match pb::PipelineStage::try_from(stage)
            .map_err(|_| malformed("pipeline setup", format!("unknown pipeline stage {stage}")))?
        {
            pb::PipelineStage::SetupCreate => Stage::SetupCreate,
            pb::PipelineStage::TransferFinalized => Stage::TransferFinalized,
            pb::PipelineStage::SetupAppend => Stage::SetupAppend,
            pb::PipelineStage::SetupStreamingRecovery => Stage::SetupStreamingRecovery,
            pb::PipelineStage::TransferRbw => Stage::TransferRbw,
        },
    )
}

pub(crate) fn checksum_type_to_pb(kind: ChecksumKind) -> pb::ChecksumType {
    match kind {
        ChecksumKind::Crc32 => pb::ChecksumType::ChecksumCrc32,
        ChecksumKind::Crc32c => pb::ChecksumType::ChecksumCrc32c,
    }
}

/// A checksum setting off the wire; `null_is_crc32c` reads an unset type
/// as CRC32C (messages from before the field existed).
fn checksum_from_pb(
    what: &'static str,
    checksum_type: i32,
    bytes_per_checksum: u32,
    null_is_crc32c: bool,
) -> Result<DataChecksum, Malformed> {
    let kind = match pb::ChecksumType::try_from(checksum_type) {
        Ok(pb::ChecksumType::ChecksumCrc32) => ChecksumKind::Crc32,
        Ok(pb::ChecksumType::ChecksumCrc32c) => ChecksumKind::Crc32c,
        Ok(pb::ChecksumType::ChecksumNull) if null_is_crc32c => ChecksumKind::Crc32c,
        _ => {
            return Err(malformed(
                what,
                format!(
                    "checksum type {checksum_type} is not supported; rdfs verifies CRC32 and CRC32C"
                ),
            ));
        }
    };
    let bpc = if bytes_per_checksum == 0 {
        DEFAULT_BYTES_PER_CHECKSUM
    } else {
        bytes_per_checksum
    };
    DataChecksum::new(kind, bpc).map_err(|e| malformed(what, e.to_string()))
}

pub fn setup_to_pb(setup: &WriteSetup) -> pb::WriteBlockHeader {
    pb::WriteBlockHeader {
        block: Some((&setup.block).into()),
        targets: setup.targets.iter().map(Into::into).collect(),
        target_storage_ids: setup.target_storage_ids.clone(),
        client_name: setup.client_name.clone(),
        stage: stage_to_pb(setup.stage) as i32,
        checksum_type: checksum_type_to_pb(setup.checksum.kind) as i32,
        bytes_per_checksum: setup.checksum.bytes_per_checksum,
        latest_generation_stamp: setup.latest_generation_stamp,
        min_bytes_rcvd: setup.min_bytes_rcvd,
        max_bytes_rcvd: setup.max_bytes_rcvd,
        block_size: setup.block_size,
        block_token: token_to_proto(&setup.token),
    }
}

pub fn setup_from_pb(header: pb::WriteBlockHeader) -> Result<WriteSetup, Malformed> {
    let block = header
        .block
        .ok_or_else(|| malformed("pipeline setup", "the header has no block"))?
        .into();
    Ok(WriteSetup {
        block,
        targets: header.targets.into_iter().map(Into::into).collect(),
        target_storage_ids: header.target_storage_ids,
        client_name: header.client_name,
        stage: stage_from_pb(header.stage)?,
        checksum: checksum_from_pb(
            "pipeline setup",
            header.checksum_type,
            header.bytes_per_checksum,
            false,
        )?,
        latest_generation_stamp: header.latest_generation_stamp,
        min_bytes_rcvd: header.min_bytes_rcvd,
        max_bytes_rcvd: header.max_bytes_rcvd,
        block_size: header.block_size,
        token: token_from_proto(header.block_token),
    })
}

pub fn header_frame(setup: &WriteSetup) -> pb::WriteBlockFrame {
    pb::WriteBlockFrame {
        frame: Some(Frame::Header(setup_to_pb(setup))),
    }
}

pub fn packet_frame(packet: Packet) -> pb::WriteBlockFrame {
    pb::WriteBlockFrame {
        frame: Some(Frame::Packet(pb::Packet {
            seqno: packet.seqno,
            offset_in_block: packet.offset_in_block,
            last_packet_in_block: packet.last_packet_in_block,
            sync_block: packet.sync_block,
            data: packet.data,
            checksums: packet.checksums,
        })),
    }
}

pub fn setup_reply_to_pb(reply: SetupReply) -> pb::WriteBlockReply {
    pb::WriteBlockReply {
        reply: Some(Reply::Setup(pb::SetupReply {
            status: status_to_pb(reply.status) as i32,
            first_bad_link: reply.first_bad_link,
            message: reply.message,
        })),
    }
}

pub fn ack_to_pb(ack: Ack) -> pb::WriteBlockReply {
    pb::WriteBlockReply {
        reply: Some(Reply::Ack(pb::PipelineAck {
            seqno: ack.seqno,
            replies: ack
                .replies
                .into_iter()
                .map(|s| status_to_pb(s) as i32)
                .collect(),
            message: ack.message,
        })),
    }
}

/// What a write stream's reply holds.
pub enum WriteReply {
    Setup(SetupReply),
    Ack(Ack),
}

pub fn reply_from_pb(reply: pb::WriteBlockReply) -> Result<WriteReply, Malformed> {
    match reply.reply {
        Some(Reply::Setup(setup)) => Ok(WriteReply::Setup(SetupReply {
            status: status_from_pb(setup.status),
            first_bad_link: setup.first_bad_link,
            message: setup.message,
        })),
        Some(Reply::Ack(ack)) => {
            if ack.replies.is_empty() {
                return Err(malformed(
                    "pipeline ack",
                    format!("the ack of packet {} has no status", ack.seqno),
                ));
            }
            Ok(WriteReply::Ack(Ack {
                seqno: ack.seqno,
                replies: ack.replies.into_iter().map(status_from_pb).collect(),
                message: ack.message,
            }))
        }
        None => Err(malformed("write reply", "empty reply")),
    }
}

pub fn read_request_to_pb(request: &ReadRequest) -> pb::ReadBlockRequest {
    pb::ReadBlockRequest {
        block: Some((&request.block).into()),
        offset: request.offset,
        length: request.length,
        client_name: request.client_name.clone(),
        block_token: token_to_proto(&request.token),
    }
}

pub fn read_request_from_pb(request: pb::ReadBlockRequest) -> Result<ReadRequest, Malformed> {
    Ok(ReadRequest {
        block: request
            .block
            .ok_or_else(|| malformed("read request", "ReadBlock without a block"))?
            .into(),
        offset: request.offset,
        length: request.length,
        client_name: request.client_name,
        token: token_from_proto(request.block_token),
    })
}

pub fn read_packet_from_pb(packet: pb::ReadPacket) -> Result<ReadPacket, Malformed> {
    Ok(ReadPacket {
        checksum: checksum_from_pb(
            "read packet",
            packet.checksum_type,
            packet.bytes_per_checksum,
            true,
        )?,
        offset_in_block: packet.offset_in_block,
        data: packet.data,
        checksums: packet.checksums,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdfs_common::protocol::ExtendedBlock;

    #[test]
    fn setups_round_trip_and_bad_ones_are_named() {
        let setup = WriteSetup {
            block: ExtendedBlock {
                pool_id: "BP-1".into(),
                block_id: 7,
                generation_stamp: 1001,
                num_bytes: 0,
            },
            targets: Vec::new(),
            target_storage_ids: vec!["DS-1".into()],
            client_name: "c".into(),
            stage: Stage::SetupAppend,
            checksum: DataChecksum::new(ChecksumKind::Crc32, 1024).expect("valid"),
            latest_generation_stamp: 1002,
            min_bytes_rcvd: 5,
            max_bytes_rcvd: 6,
            block_size: 1 << 20,
            token: Default::default(),
        };
        assert_eq!(setup_from_pb(setup_to_pb(&setup)), Ok(setup.clone()));
        let mut header = setup_to_pb(&setup);
        header.checksum_type = pb::ChecksumType::ChecksumNull as i32;
        let err = setup_from_pb(header).expect_err("NULL checksums are refused");
        assert!(err.to_string().contains("checksum type 0"), "{err}");
        let mut header = setup_to_pb(&setup);
        header.stage = 99;
        assert!(setup_from_pb(header).is_err());
        let mut header = setup_to_pb(&setup);
        header.bytes_per_checksum = 64 << 20;
        assert!(setup_from_pb(header).is_err());
        let mut header = setup_to_pb(&setup);
        header.block = None;
        assert!(setup_from_pb(header).is_err());
    }

    #[test]
    fn acks_without_a_status_are_malformed() {
        let ack = pb::WriteBlockReply {
            reply: Some(Reply::Ack(pb::PipelineAck {
                seqno: 3,
                replies: Vec::new(),
                message: String::new(),
            })),
        };
        assert!(reply_from_pb(ack).is_err());
        let Ok(WriteReply::Ack(ack)) = reply_from_pb(ack_to_pb(Ack {
            seqno: 4,
            replies: vec![Status::Success, Status::ErrorChecksum],
            message: "m".into(),
        })) else {
            panic!("an ack")
        };
        assert_eq!(ack.first_failure(), Some((1, Status::ErrorChecksum)));
    }
}
