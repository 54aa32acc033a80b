//! gRPC message framing for the data streams without tonic's codec, so
//! block data is never copied in user space between the socket and the
//! disk.
//!
//! tonic's codec copies every message twice: the HTTP/2 DATA frames of a
//! stream are appended to one decode buffer, and every message sent is
//! encoded into one encode buffer. Here a stream's DATA frames are kept as
//! they arrived ([`Rope`]), a packet's data field is sliced out of the frame
//! that holds it, and a packet is sent as two chunks: a small head (the
//! gRPC prefix, the packet's fields and its checksums) and its data, as is.
//! A datanode thus hands its mirror, and its disk, the very bytes it
//! received.
//!
//! The bytes on the wire are ordinary protobuf (`rdfs.WriteBlockFrame`,
//! `rdfs.ReadPacket`; the checksums field is written before the data
//! field, which protobuf allows), so a peer using tonic's codec reads them
//! unchanged.

use std::collections::VecDeque;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;

use rdfs_proto as pb;

use crate::grpc::Malformed;
use crate::packet::Packet;
use crate::setup::ReadPacket;

/// gRPC's length prefix: a compression flag and a big-endian length.
const PREFIX: usize = 5;

fn malformed(what: &'static str, why: impl Into<String>) -> Malformed {
    Malformed {
        what,
        why: why.into(),
    }
}

/// The DATA frames of a stream not consumed yet, as they arrived.
#[derive(Default)]
pub struct Rope {
    chunks: VecDeque<Bytes>,
    len: usize,
}

impl Rope {
    pub fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.len += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn peek(&self, out: &mut [u8]) -> bool {
        if self.len < out.len() {
            return false;
        }
        let mut filled = 0;
        for chunk in &self.chunks {
            let take = (out.len() - filled).min(chunk.len());
            out[filled..filled + take].copy_from_slice(&chunk[..take]);
            filled += take;
            if filled == out.len() {
                break;
            }
        }
        true
    }

    /// Removes the first `n` bytes (at most `len`), as the chunks that held
    /// them.
    fn take(&mut self, mut n: usize) -> Segments {
        let mut parts = Vec::new();
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            if front.len() <= n {
                n -= front.len();
                parts.extend(self.chunks.pop_front());
            } else {
                parts.push(front.split_to(n));
                n = 0;
            }
        }
        Segments { parts }
    }

    /// The next whole message, if it has arrived; a message longer than
    /// `max_len` or a compressed one is malformed.
    pub fn next_message(&mut self, max_len: usize) -> Result<Option<Segments>, Malformed> {
        let mut prefix = [0u8; PREFIX];
        if !self.peek(&mut prefix) {
            return Ok(None);
        }
        if prefix[0] != 0 {
            return Err(malformed(
                "gRPC message",
                "compressed messages are not accepted on data streams",
            ));
        }
        let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
        if len > max_len {
            return Err(malformed(
                "gRPC message",
                format!("a message of {len} bytes is larger than the {max_len} allowed"),
            ));
        }
        if self.len < PREFIX + len {
            return Ok(None);
        }
        drop(self.take(PREFIX));
        Ok(Some(self.take(len)))
    }
}

/// One message, in the pieces it arrived in.
pub struct Segments {
    parts: Vec<Bytes>,
}

impl Segments {
    /// The message as one buffer: free when it arrived in one piece.
    pub fn contiguous(self) -> Bytes {
        match self.parts.len() {
            0 => Bytes::new(),
            1 => self.parts.into_iter().next().unwrap_or_default(),
            _ => {
                let mut all = BytesMut::with_capacity(self.parts.iter().map(Bytes::len).sum());
                for part in self.parts {
                    all.put(part);
                }
                all.freeze()
            }
        }
    }

    fn cursor(self) -> Cursor {
        let remaining = self.parts.iter().map(Bytes::len).sum();
        Cursor {
            parts: self.parts.into(),
            remaining,
        }
    }
}

/// Reads protobuf fields across the pieces of a message.
struct Cursor {
    parts: VecDeque<Bytes>,
    remaining: usize,
}

impl Cursor {
    fn byte(&mut self) -> Option<u8> {
        while let Some(front) = self.parts.front_mut() {
            if front.is_empty() {
                self.parts.pop_front();
                continue;
            }
            self.remaining -= 1;
            return Some(front.get_u8());
        }
        None
    }

    fn varint(&mut self) -> Result<u64, Malformed> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self
                .byte()
                .ok_or_else(|| malformed("protobuf field", "a varint runs past the message"))?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed("protobuf field", "a varint longer than 10 bytes"))
    }

    /// The next `n` bytes: a slice of the piece holding them, or a copy
    /// when they straddle pieces.
    fn bytes(&mut self, n: usize) -> Result<Bytes, Malformed> {
        if n > self.remaining {
            return Err(malformed(
                "protobuf field",
                format!("a field of {n} bytes runs past the message"),
            ));
        }
        self.remaining -= n;
        while self.parts.front().is_some_and(Bytes::is_empty) {
            self.parts.pop_front();
        }
        if let Some(front) = self.parts.front_mut()
            && front.len() >= n
        {
            return Ok(front.split_to(n));
        }
        let mut out = BytesMut::with_capacity(n);
        let mut n = n;
        while n > 0 {
            let Some(front) = self.parts.front_mut() else {
                break;
            };
            let take = n.min(front.len());
            out.put(front.split_to(take));
            n -= take;
            if front.is_empty() {
                self.parts.pop_front();
            }
        }
        Ok(out.freeze())
    }

    fn skip(&mut self, wire_type: u64) -> Result<(), Malformed> {
        match wire_type {
            0 => self.varint().map(drop),
            1 => self.bytes(8).map(drop),
            2 => {
                let len = self.varint()? as usize;
                self.bytes(len).map(drop)
            }
            5 => self.bytes(4).map(drop),
            other => Err(malformed(
                "protobuf field",
                format!("wire type {other} is not supported"),
            )),
        }
    }

    /// A cursor over the next `len` bytes, which this one skips.
    fn sub(&mut self, len: usize) -> Result<Cursor, Malformed> {
        if len > self.remaining {
            return Err(malformed(
                "protobuf field",
                format!("a message of {len} bytes runs past its container"),
            ));
        }
        let mut parts = VecDeque::new();
        let mut n = len;
        while n > 0 {
            let Some(front) = self.parts.front_mut() else {
                break;
            };
            let take = n.min(front.len());
            parts.push_back(front.split_to(take));
            n -= take;
            if front.is_empty() {
                self.parts.pop_front();
            }
        }
        self.remaining -= len;
        Ok(Cursor {
            parts,
            remaining: len,
        })
    }
}

/// What a write stream's frame holds, decoded without copying a packet's
/// data.
pub enum WireFrame {
    Header(pb::WriteBlockHeader),
    Packet(Packet),
}

/// Decodes one `rdfs.WriteBlockFrame`.
pub fn decode_write_frame(message: Segments) -> Result<WireFrame, Malformed> {
    let mut cursor = message.cursor();
    let mut frame = None;
    while cursor.remaining > 0 {
        let key = cursor.varint()?;
        match (key >> 3, key & 7) {
            (1, 2) => {
                let len = cursor.varint()? as usize;
                let header = pb::WriteBlockHeader::decode(cursor.bytes(len)?)
                    .map_err(|e| malformed("pipeline setup", e.to_string()))?;
                frame = Some(WireFrame::Header(header));
            }
            (2, 2) => {
                let len = cursor.varint()? as usize;
                frame = Some(WireFrame::Packet(decode_packet(cursor.sub(len)?)?));
            }
            (_, wire_type) => cursor.skip(wire_type)?,
        }
    }
    frame.ok_or_else(|| malformed("write frame", "empty frame"))
}

fn decode_packet(mut cursor: Cursor) -> Result<Packet, Malformed> {
    let mut packet = Packet::default();
    while cursor.remaining > 0 {
        let key = cursor.varint()?;
        match (key >> 3, key & 7) {
            (1, 0) => packet.seqno = cursor.varint()? as i64,
            (2, 0) => packet.offset_in_block = cursor.varint()?,
            (3, 0) => packet.last_packet_in_block = cursor.varint()? != 0,
            (4, 0) => packet.sync_block = cursor.varint()? != 0,
            (5, 2) => {
                let len = cursor.varint()? as usize;
                packet.data = cursor.bytes(len)?;
            }
            (6, 2) => {
                let len = cursor.varint()? as usize;
                packet.checksums = cursor.bytes(len)?;
            }
            (_, wire_type) => cursor.skip(wire_type)?,
        }
    }
    Ok(packet)
}

/// Decodes one `rdfs.ReadPacket`.
pub fn decode_read_packet(message: Segments) -> Result<pb::ReadPacket, Malformed> {
    let mut cursor = message.cursor();
    let mut packet = pb::ReadPacket::default();
    while cursor.remaining > 0 {
        let key = cursor.varint()?;
        match (key >> 3, key & 7) {
            (1, 0) => packet.offset_in_block = cursor.varint()?,
            (2, 2) => {
                let len = cursor.varint()? as usize;
                packet.data = cursor.bytes(len)?;
            }
            (3, 2) => {
                let len = cursor.varint()? as usize;
                packet.checksums = cursor.bytes(len)?;
            }
            (4, 0) => packet.bytes_per_checksum = cursor.varint()? as u32,
            (5, 0) => packet.checksum_type = cursor.varint()? as i32,
            (_, wire_type) => cursor.skip(wire_type)?,
        }
    }
    Ok(packet)
}

fn put_varint(out: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

fn varint_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_key(out: &mut BytesMut, field: u64, wire_type: u64) {
    put_varint(out, (field << 3) | wire_type);
}

fn put_varint_field(out: &mut BytesMut, field: u64, value: u64) {
    if value != 0 {
        put_key(out, field, 0);
        put_varint(out, value);
    }
}

fn varint_field_len(field: u64, value: u64) -> usize {
    if value == 0 {
        0
    } else {
        varint_len(field << 3) + varint_len(value)
    }
}

fn bytes_field_len(field: u64, len: usize) -> usize {
    if len == 0 {
        0
    } else {
        varint_len(field << 3) + varint_len(len as u64) + len
    }
}

fn put_prefix(out: &mut BytesMut, len: usize) {
    out.put_u8(0);
    out.put_u32(len as u32);
}

/// A message ready to send: a head and, when there is one, the block data
/// that follows it untouched.
pub struct Chunks {
    pub head: Bytes,
    pub data: Option<Bytes>,
}

/// Encodes any small message whole (setups, acks, setup replies).
pub fn encode_message(message: &impl Message) -> Bytes {
    let len = message.encoded_len();
    let mut out = BytesMut::with_capacity(PREFIX + len);
    put_prefix(&mut out, len);
    message.encode_raw(&mut out);
    out.freeze()
}

/// Encodes a packet as an `rdfs.WriteBlockFrame`, its data left in place.
pub fn encode_packet(packet: &Packet) -> Chunks {
    let data_len = packet.data.len();
    let fields = varint_field_len(1, packet.seqno as u64)
        + varint_field_len(2, packet.offset_in_block)
        + varint_field_len(3, u64::from(packet.last_packet_in_block))
        + varint_field_len(4, u64::from(packet.sync_block))
        + bytes_field_len(6, packet.checksums.len())
        + bytes_field_len(5, data_len);
    let frame_len = varint_len(2 << 3) + varint_len(fields as u64) + fields;
    let mut head = BytesMut::with_capacity(PREFIX + frame_len - data_len);
    put_prefix(&mut head, frame_len);
    put_key(&mut head, 2, 2);
    put_varint(&mut head, fields as u64);
    put_varint_field(&mut head, 1, packet.seqno as u64);
    put_varint_field(&mut head, 2, packet.offset_in_block);
    put_varint_field(&mut head, 3, u64::from(packet.last_packet_in_block));
    put_varint_field(&mut head, 4, u64::from(packet.sync_block));
    if !packet.checksums.is_empty() {
        put_key(&mut head, 6, 2);
        put_varint(&mut head, packet.checksums.len() as u64);
        head.put_slice(&packet.checksums);
    }
    if data_len > 0 {
        put_key(&mut head, 5, 2);
        put_varint(&mut head, data_len as u64);
    }
    Chunks {
        head: head.freeze(),
        data: (data_len > 0).then(|| packet.data.clone()),
    }
}

/// Encodes a read packet as an `rdfs.ReadPacket`, its data left in place.
pub fn encode_read_packet(packet: &ReadPacket) -> Chunks {
    let data_len = packet.data.len();
    let checksum_type = crate::grpc::checksum_type_to_pb(packet.checksum.kind) as u64;
    let bpc = u64::from(packet.checksum.bytes_per_checksum);
    let len = varint_field_len(1, packet.offset_in_block)
        + bytes_field_len(3, packet.checksums.len())
        + varint_field_len(4, bpc)
        + varint_field_len(5, checksum_type)
        + bytes_field_len(2, data_len);
    let mut head = BytesMut::with_capacity(PREFIX + len - data_len);
    put_prefix(&mut head, len);
    put_varint_field(&mut head, 1, packet.offset_in_block);
    if !packet.checksums.is_empty() {
        put_key(&mut head, 3, 2);
        put_varint(&mut head, packet.checksums.len() as u64);
        head.put_slice(&packet.checksums);
    }
    put_varint_field(&mut head, 4, bpc);
    put_varint_field(&mut head, 5, checksum_type);
    if data_len > 0 {
        put_key(&mut head, 2, 2);
        put_varint(&mut head, data_len as u64);
    }
    Chunks {
        head: head.freeze(),
        data: (data_len > 0).then(|| packet.data.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdfs_common::checksum::{ChecksumKind, DataChecksum};

    fn packet(seqno: i64, len: usize) -> Packet {
        let data: Bytes = (0..len).map(|i| (i * 31) as u8).collect::<Vec<_>>().into();
        Packet {
            seqno,
            offset_in_block: 65536 * 3,
            last_packet_in_block: seqno == 7,
            sync_block: true,
            checksums: DataChecksum::crc32c(512).compute(&data).into(),
            data,
        }
    }

    /// Splits the chunks as a network might: at every `cut` bytes.
    fn arrive(chunks: Vec<Bytes>, cut: usize) -> Rope {
        let mut all = BytesMut::new();
        for c in chunks {
            all.put(c);
        }
        let mut all = all.freeze();
        let mut rope = Rope::default();
        while !all.is_empty() {
            rope.push(all.split_to(cut.min(all.len())));
        }
        rope
    }

    #[test]
    fn packets_round_trip_and_their_data_is_not_copied() {
        for (seqno, len) in [(0, 65536), (-1, 0), (7, 1), (5, 700)] {
            let sent = packet(seqno, len);
            let chunks = encode_packet(&sent);
            // What tonic's codec would decode from the same bytes.
            let mut whole = BytesMut::new();
            whole.put(chunks.head.clone());
            if let Some(data) = &chunks.data {
                whole.put(data.clone());
            }
            let prost_frame = pb::WriteBlockFrame::decode(&whole[PREFIX..]).expect("protobuf");
            let Some(pb::write_block_frame::Frame::Packet(p)) = prost_frame.frame else {
                panic!("a packet frame")
            };
            assert_eq!((p.seqno, p.data.len()), (sent.seqno, len));
            assert_eq!(p.checksums, sent.checksums);

            // Arriving as sent (head, then data): the data is a slice.
            let mut rope = Rope::default();
            rope.push(chunks.head.clone());
            let data_chunk = chunks.data.clone();
            if let Some(data) = data_chunk.clone() {
                rope.push(data);
            }
            let message = rope
                .next_message(1 << 26)
                .expect("valid")
                .expect("complete");
            assert!(rope.is_empty());
            let WireFrame::Packet(got) = decode_write_frame(message).expect("decodes") else {
                panic!("a packet")
            };
            assert_eq!(got, sent);
            if let Some(data) = data_chunk {
                assert_eq!(got.data.as_ptr(), data.as_ptr());
            }
        }
    }

    #[test]
    fn messages_cut_anywhere_decode_the_same() {
        let sent = packet(3, 5000);
        let chunks = encode_packet(&sent);
        let header = pb::WriteBlockFrame {
            frame: Some(pb::write_block_frame::Frame::Header(pb::WriteBlockHeader {
                client_name: "c".into(),
                bytes_per_checksum: 512,
                ..Default::default()
            })),
        };
        for cut in [1, 2, 3, 5, 7, 100, 4096, 1 << 20] {
            let mut all = vec![encode_message(&header), chunks.head.clone()];
            all.extend(chunks.data.clone());
            let mut rope = arrive(all, cut);
            let first = rope.next_message(1 << 26).expect("valid").expect("header");
            assert!(matches!(
                decode_write_frame(first).expect("decodes"),
                WireFrame::Header(h) if h.client_name == "c"
            ));
            let second = rope.next_message(1 << 26).expect("valid").expect("packet");
            let WireFrame::Packet(got) = decode_write_frame(second).expect("decodes") else {
                panic!("a packet")
            };
            assert_eq!(got, sent);
            assert!(rope.next_message(1 << 26).expect("valid").is_none());
        }
    }

    #[test]
    fn read_packets_round_trip() {
        let checksum = DataChecksum::new(ChecksumKind::Crc32, 1024).expect("valid");
        let data: Bytes = vec![9u8; 3000].into();
        let sent = ReadPacket {
            offset_in_block: 1024,
            checksums: checksum.compute(&data).into(),
            data,
            checksum,
        };
        let chunks = encode_read_packet(&sent);
        let mut all = vec![chunks.head];
        all.extend(chunks.data);
        let mut rope = arrive(all, 777);
        let message = rope.next_message(1 << 26).expect("valid").expect("whole");
        let got = crate::grpc::read_packet_from_pb(decode_read_packet(message).expect("decodes"))
            .expect("valid");
        assert_eq!(got, sent);
    }

    #[test]
    fn bad_messages_are_named_not_panics() {
        let mut rope = Rope::default();
        rope.push(Bytes::from_static(&[1, 0, 0, 0, 1, 0]));
        assert!(rope.next_message(100).is_err(), "compressed");
        let mut rope = Rope::default();
        rope.push(Bytes::from_static(&[0, 0, 0, 1, 0]));
        assert!(rope.next_message(100).is_err(), "too long");
        // A packet whose data field claims more bytes than the message has.
        let mut rope = Rope::default();
        rope.push(Bytes::from_static(&[0, 0, 0, 0, 4, 0x12, 2, 0x2a, 9]));
        let message = rope.next_message(100).expect("framing").expect("whole");
        assert!(decode_write_frame(message).is_err());
        // Garbage of every length decodes to an error or a frame, never a panic.
        for len in 0..64u8 {
            let body: Vec<u8> = (0..len)
                .map(|i| i.wrapping_mul(151).wrapping_add(len))
                .collect();
            let mut framed = vec![0, 0, 0, 0, len];
            framed.extend(&body);
            let mut rope = Rope::default();
            rope.push(framed.into());
            if let Ok(Some(message)) = rope.next_message(100) {
                let _ = decode_write_frame(message);
            }
        }
    }
}
