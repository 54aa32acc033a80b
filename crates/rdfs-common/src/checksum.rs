//! CRC32C checksums over fixed-size chunks, and the header of the meta file
//! that stores them beside each block replica (HDFS's `DataChecksum` and
//! `BlockMetadataHeader` layouts, so replicas stay readable by HDFS tools).

use bytes::BufMut;

/// Bytes covered by one checksum unless configured otherwise.
pub const DEFAULT_BYTES_PER_CHECKSUM: u32 = 512;
/// Size of one stored CRC32C.
pub const CHECKSUM_SIZE: usize = 4;
/// HDFS's checksum type id for CRC32C.
pub const CHECKSUM_TYPE_CRC32C: u8 = 2;
/// The only meta file version HDFS has written.
pub const META_VERSION: u16 = 1;
/// version (u16) + checksum type (u8) + bytes per checksum (u32), big-endian.
pub const META_HEADER_LEN: usize = 7;

/// A chunk whose data does not match its checksum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "checksum error at offset {offset}: expected crc {expected:#010x}, computed {computed:#010x}"
)]
pub struct ChecksumMismatch {
    /// Offset of the bad chunk's first byte, counted from the `base_offset`
    /// given to [`verify`].
    pub offset: u64,
    pub expected: u32,
    pub computed: u32,
}

/// Length in bytes of the checksums covering `data_len` bytes.
pub fn checksums_len(data_len: usize, bytes_per_checksum: u32) -> usize {
    data_len.div_ceil(bytes_per_checksum as usize) * CHECKSUM_SIZE
}

/// Appends one big-endian CRC32C per chunk of `data` (the last may be partial).
pub fn compute_into(data: &[u8], bytes_per_checksum: u32, out: &mut impl BufMut) {
    for chunk in data.chunks(bytes_per_checksum as usize) {
        out.put_u32(crc32c::crc32c(chunk));
    }
}

/// The checksums of `data`, one per chunk.
pub fn compute(data: &[u8], bytes_per_checksum: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(checksums_len(data.len(), bytes_per_checksum));
    compute_into(data, bytes_per_checksum, &mut out);
    out
}

/// Checks every chunk of `data` against `checksums`. `base_offset` is the
/// offset of `data[0]` in the block, used only to name the bad chunk.
pub fn verify(
    data: &[u8],
    checksums: &[u8],
    bytes_per_checksum: u32,
    base_offset: u64,
) -> Result<(), ChecksumMismatch> {
    let mut offset = base_offset;
    for (chunk, stored) in data
        .chunks(bytes_per_checksum as usize)
        .zip(checksums.chunks_exact(CHECKSUM_SIZE))
    {
        let expected = u32::from_be_bytes([stored[0], stored[1], stored[2], stored[3]]);
        let computed = crc32c::crc32c(chunk);
        if expected != computed {
            return Err(ChecksumMismatch {
                offset,
                expected,
                computed,
            });
        }
        offset += chunk.len() as u64;
    }
    Ok(())
}

/// The chunks of `len` bytes starting at `offset_in_block`, cut at the
/// block's chunk boundaries: a range that starts mid-chunk (after an hflush
/// of a partial chunk, or an append) has a short first chunk.
pub fn chunk_lengths(
    offset_in_block: u64,
    len: usize,
    bytes_per_checksum: u32,
) -> impl Iterator<Item = usize> {
    let bpc = bytes_per_checksum as usize;
    let first = (bpc - (offset_in_block % bpc as u64) as usize).min(len);
    let rest = len - first;
    std::iter::once(first)
        .filter(|n| *n > 0)
        .chain((0..rest.div_ceil(bpc)).map(move |i| (rest - i * bpc).min(bpc)))
}

/// [`checksums_len`] for data starting at `offset_in_block`.
pub fn checksums_len_at(offset_in_block: u64, data_len: usize, bytes_per_checksum: u32) -> usize {
    chunk_lengths(offset_in_block, data_len, bytes_per_checksum).count() * CHECKSUM_SIZE
}

/// [`compute_into`] for data starting at `offset_in_block`.
pub fn compute_at(
    data: &[u8],
    offset_in_block: u64,
    bytes_per_checksum: u32,
    out: &mut impl BufMut,
) {
    let mut rest = data;
    for len in chunk_lengths(offset_in_block, data.len(), bytes_per_checksum) {
        let (chunk, tail) = rest.split_at(len);
        out.put_u32(crc32c::crc32c(chunk));
        rest = tail;
    }
}

/// [`verify`] for data starting at `offset_in_block`, which names the bad
/// chunk by its offset in the block.
pub fn verify_at(
    data: &[u8],
    checksums: &[u8],
    bytes_per_checksum: u32,
    offset_in_block: u64,
) -> Result<(), ChecksumMismatch> {
    let mut offset = offset_in_block;
    let mut rest = data;
    for (len, stored) in chunk_lengths(offset_in_block, data.len(), bytes_per_checksum)
        .zip(checksums.chunks_exact(CHECKSUM_SIZE))
    {
        let (chunk, tail) = rest.split_at(len);
        rest = tail;
        let expected = u32::from_be_bytes([stored[0], stored[1], stored[2], stored[3]]);
        let computed = crc32c::crc32c(chunk);
        if expected != computed {
            return Err(ChecksumMismatch {
                offset,
                expected,
                computed,
            });
        }
        offset += len as u64;
    }
    Ok(())
}

/// The fixed header at the start of every meta file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaHeader {
    pub version: u16,
    pub checksum_type: u8,
    pub bytes_per_checksum: u32,
}

/// Why a meta file header cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaHeaderError {
    #[error("meta file header is {0} bytes, shorter than the {META_HEADER_LEN} expected")]
    Truncated(usize),
    #[error("meta file version {0} is not supported (expected {META_VERSION})")]
    Version(u16),
    #[error("checksum type {0} is not supported (expected CRC32C = {CHECKSUM_TYPE_CRC32C})")]
    ChecksumType(u8),
    #[error("bytes per checksum {0} is not valid")]
    BytesPerChecksum(u32),
}

impl MetaHeader {
    pub fn crc32c(bytes_per_checksum: u32) -> Self {
        Self {
            version: META_VERSION,
            checksum_type: CHECKSUM_TYPE_CRC32C,
            bytes_per_checksum,
        }
    }

    pub fn encode(&self) -> [u8; META_HEADER_LEN] {
        let mut out = [0u8; META_HEADER_LEN];
        out[0..2].copy_from_slice(&self.version.to_be_bytes());
        out[2] = self.checksum_type;
        out[3..7].copy_from_slice(&self.bytes_per_checksum.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, MetaHeaderError> {
        if bytes.len() < META_HEADER_LEN {
            return Err(MetaHeaderError::Truncated(bytes.len()));
        }
        let version = u16::from_be_bytes([bytes[0], bytes[1]]);
        let checksum_type = bytes[2];
        let bytes_per_checksum = u32::from_be_bytes([bytes[3], bytes[4], bytes[5], bytes[6]]);
        if version != META_VERSION {
            return Err(MetaHeaderError::Version(version));
        }
        if checksum_type != CHECKSUM_TYPE_CRC32C {
            return Err(MetaHeaderError::ChecksumType(checksum_type));
        }
        if bytes_per_checksum == 0 || bytes_per_checksum > 16 * 1024 * 1024 {
            return Err(MetaHeaderError::BytesPerChecksum(bytes_per_checksum));
        }
        Ok(Self {
            version,
            checksum_type,
            bytes_per_checksum,
        })
    }

    /// The meta file length that covers a block of `block_len` bytes.
    pub fn meta_file_len(&self, block_len: u64) -> u64 {
        META_HEADER_LEN as u64 + checksums_len(block_len as usize, self.bytes_per_checksum) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_starting_mid_chunk_have_a_short_first_chunk() {
        let lens: Vec<usize> = chunk_lengths(700, 1000, 512).collect();
        assert_eq!(lens, vec![324, 512, 164]);
        assert_eq!(
            chunk_lengths(1024, 1024, 512).collect::<Vec<_>>(),
            vec![512, 512]
        );
        assert_eq!(chunk_lengths(5, 0, 512).count(), 0);
        assert_eq!(chunk_lengths(5, 3, 512).collect::<Vec<_>>(), vec![3]);
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut sums = Vec::new();
        compute_at(&data, 700, 512, &mut sums);
        assert_eq!(sums.len(), checksums_len_at(700, 1000, 512));
        verify_at(&data, &sums, 512, 700).expect("verifies");
        // The whole chunk's checksum follows from the stored partial one.
        let partial = crc32c::crc32c(&[7u8; 188]);
        let whole = crc32c::crc32c_append(partial, &data[..324]);
        let mut chunk = vec![7u8; 188];
        chunk.extend_from_slice(&data[..324]);
        assert_eq!(whole, crc32c::crc32c(&chunk));
        let mut bad = sums.clone();
        bad[4] ^= 1;
        assert_eq!(verify_at(&data, &bad, 512, 700).unwrap_err().offset, 1024);
    }
    use proptest::prelude::*;

    #[test]
    fn detects_a_flipped_bit_and_names_its_chunk() {
        let mut data = vec![7u8; 2000];
        let sums = compute(&data, 512);
        assert_eq!(sums.len(), 16);
        verify(&data, &sums, 512, 0).expect("clean data verifies");
        data[1500] ^= 1;
        let err = verify(&data, &sums, 512, 4096).expect_err("flipped bit is caught");
        assert_eq!(err.offset, 4096 + 1024);
    }

    #[test]
    fn meta_header_round_trips_and_rejects_garbage() {
        let header = MetaHeader::crc32c(512);
        let bytes = header.encode();
        assert_eq!(bytes, [0, 1, 2, 0, 0, 2, 0]);
        assert_eq!(MetaHeader::decode(&bytes), Ok(header));
        assert_eq!(
            MetaHeader::decode(&bytes[..3]),
            Err(MetaHeaderError::Truncated(3))
        );
        assert_eq!(
            MetaHeader::decode(&[0, 2, 2, 0, 0, 2, 0]),
            Err(MetaHeaderError::Version(2))
        );
        assert_eq!(
            MetaHeader::decode(&[0, 1, 1, 0, 0, 2, 0]),
            Err(MetaHeaderError::ChecksumType(1))
        );
        assert_eq!(header.meta_file_len(0), 7);
        assert_eq!(header.meta_file_len(513), 7 + 8);
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = MetaHeader::decode(&bytes);
        }

        #[test]
        fn computed_checksums_verify(data in proptest::collection::vec(any::<u8>(), 0..5000), bpc in 1u32..1024) {
            let sums = compute(&data, bpc);
            prop_assert_eq!(sums.len(), checksums_len(data.len(), bpc));
            prop_assert!(verify(&data, &sums, bpc, 0).is_ok());
        }
    }
}
