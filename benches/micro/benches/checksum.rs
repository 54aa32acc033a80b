//! CRC32C (and CRC32) over one data-transfer packet.
//!
//! Every byte written to or read from a datanode is checksummed in
//! `bytes_per_checksum` chunks (512 bytes by default): the client computes
//! the checksums of each 64 KiB packet, every datanode of the pipeline
//! verifies them, and readers verify them again. This measures the library
//! code that does it, `rdfs_common::checksum::DataChecksum::{compute,
//! compute_at, verify_at}`, over one 64 KiB packet, against one
//! `crc32c::crc32c` over the whole buffer: the difference is the cost of
//! cutting the packet into 128 chunks (and of one `put_u32` per chunk), not
//! of the CRC itself. CRC32 (what the Go client asks for) is measured beside
//! it.
//!
//! Run: `cargo bench -p rdfs-micro-benches --bench checksum`.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rdfs_common::checksum::{ChecksumKind, DEFAULT_BYTES_PER_CHECKSUM, DataChecksum};

/// One full data packet, as the client's block writer sends them.
const PACKET: usize = 64 * 1024;
const CRC32C: DataChecksum = DataChecksum::crc32c(DEFAULT_BYTES_PER_CHECKSUM);

fn packet_data() -> Vec<u8> {
    // Not all zeros, so nothing can be short-circuited.
    let mut x: u32 = 0x9e37_79b9;
    (0..PACKET)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn bench_checksum(c: &mut Criterion) {
    let data = packet_data();
    let sums = CRC32C.compute(&data);
    assert_eq!(sums.len(), CRC32C.checksums_len(PACKET));
    let crc32 = DataChecksum::new(ChecksumKind::Crc32, DEFAULT_BYTES_PER_CHECKSUM)
        .expect("a valid setting");
    let crc32_sums = crc32.compute(&data);

    let mut group = c.benchmark_group("checksum_64KiB_packet_512B_chunks");
    group.throughput(Throughput::Bytes(PACKET as u64));

    group.bench_function("compute", |b| {
        b.iter(|| black_box(CRC32C).compute(black_box(&data)));
    });

    let mut out = BytesMut::with_capacity(sums.len());
    group.bench_function("compute_into_reused_BytesMut", |b| {
        b.iter(|| {
            out.clear();
            black_box(CRC32C).compute_at(black_box(&data), 0, &mut out);
            black_box(&out);
        });
    });

    group.bench_function("verify", |b| {
        b.iter(|| {
            black_box(CRC32C)
                .verify_at(black_box(&data), black_box(&sums), 0)
                .expect("checksums match")
        });
    });

    group.bench_function("compute_crc32", |b| {
        b.iter(|| black_box(crc32).compute(black_box(&data)));
    });

    group.bench_function("verify_crc32", |b| {
        b.iter(|| {
            black_box(crc32)
                .verify_at(black_box(&data), black_box(&crc32_sums), 0)
                .expect("checksums match")
        });
    });

    group.bench_function("crc32c_whole_buffer", |b| {
        b.iter(|| crc32c::crc32c(black_box(&data)));
    });
    group.finish();
}

criterion_group!(benches, bench_checksum);
criterion_main!(benches);
