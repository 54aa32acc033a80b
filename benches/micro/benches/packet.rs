//! Protobuf encode and decode of one write-pipeline packet.
//!
//! The client's block writer sends each 64 KiB of block data as a
//! `WriteBlockFrame` holding a `Packet` (data plus one CRC32C per 512-byte
//! chunk) on the `WriteBlock` gRPC stream; every datanode decodes it,
//! forwards it downstream and writes it. This measures the generated prost
//! code for that message (`rdfs_proto::WriteBlockFrame`): encoding into a
//! reused `BytesMut` (what tonic's encoder does with its buffer) and
//! decoding from `Bytes` (what tonic's decoder hands prost).
//!
//! `crates/rdfs-proto/build.rs` configures `.rdfs.Packet` and
//! `.rdfs.ReadPacket` with `bytes`, so `Packet::data` and
//! `Packet::checksums` are `bytes::Bytes`: decoding from `Bytes` slices the
//! input instead of copying it (checked below before measuring). Decoding
//! from a `&[u8]` copies the payload and is measured beside it to show what
//! the configuration saves.
//!
//! Run: `cargo bench -p rdfs-micro-benches --bench packet`.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use rdfs_common::checksum::{DEFAULT_BYTES_PER_CHECKSUM, DataChecksum};
use rdfs_proto as pb;
use rdfs_proto::write_block_frame::Frame;

const PACKET: usize = 64 * 1024;

/// A packet in the middle of a block, as `block_writer.rs` builds them.
fn frame() -> pb::WriteBlockFrame {
    let data: Bytes = (0..PACKET)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761) as u8)
        .collect::<Vec<u8>>()
        .into();
    let checksums: Bytes = DataChecksum::crc32c(DEFAULT_BYTES_PER_CHECKSUM)
        .compute(&data)
        .into();
    pb::WriteBlockFrame {
        frame: Some(Frame::Packet(pb::Packet {
            seqno: 42,
            offset_in_block: 42 * PACKET as u64,
            last_packet_in_block: false,
            sync_block: false,
            data,
            checksums,
        })),
    }
}

fn packet_of(frame: &pb::WriteBlockFrame) -> &pb::Packet {
    match &frame.frame {
        Some(Frame::Packet(packet)) => packet,
        _ => panic!("not a packet frame"),
    }
}

fn bench_packet(c: &mut Criterion) {
    let frame = frame();
    let encoded: Bytes = frame.encode_to_vec().into();

    // Decoding from `Bytes` must hand out slices of the input, not copies.
    let decoded = pb::WriteBlockFrame::decode(encoded.clone()).expect("decodes");
    let data = &packet_of(&decoded).data;
    let input = encoded.as_ptr_range();
    let zero_copy = input.contains(&data.as_ptr());
    assert_eq!(decoded, frame);
    assert!(
        zero_copy,
        "Packet::data was copied on decode: is `.bytes(\".rdfs.Packet\")` still in rdfs-proto's build.rs?"
    );
    println!(
        "packet: WriteBlockFrame of {} data bytes + {} checksum bytes encodes to {} bytes; \
         Packet::data is bytes::Bytes and decodes zero-copy from Bytes",
        packet_of(&frame).data.len(),
        packet_of(&frame).checksums.len(),
        encoded.len()
    );

    let mut group = c.benchmark_group("write_block_frame_64KiB_packet");
    group.throughput(Throughput::Bytes(PACKET as u64));

    let mut buf = BytesMut::with_capacity(frame.encoded_len());
    group.bench_function("encode_reused_BytesMut", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&frame)
                .encode(&mut buf)
                .expect("the buffer has room");
            black_box(&buf);
        });
    });

    group.bench_function("decode_from_Bytes_zero_copy", |b| {
        b.iter(|| pb::WriteBlockFrame::decode(black_box(encoded.clone())).expect("decodes"));
    });

    group.bench_function("decode_from_slice_copying", |b| {
        b.iter(|| pb::WriteBlockFrame::decode(black_box(&encoded[..])).expect("decodes"));
    });
    group.finish();
}

criterion_group!(benches, bench_packet);
criterion_main!(benches);
