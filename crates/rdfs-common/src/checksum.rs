//! CRC32C and CRC32 checksums over fixed-size chunks, and the header of
//! the meta file that stores them beside each block replica (HDFS's `DataChecksum` and
//! `BlockMetadataHeader` layouts, so replicas stay readable by HDFS tools).

use bytes::BufMut;

/// Bytes covered by one checksum unless configured otherwise.
pub const DEFAULT_BYTES_PER_CHECKSUM: u32 = 512;
/// Size of one stored CRC32C.
pub const CHECKSUM_SIZE: usize = 4;
/// HDFS's checksum type id for CRC32.
pub const CHECKSUM_TYPE_CRC32: u8 = 1;
/// HDFS's checksum type id for CRC32C.
pub const CHECKSUM_TYPE_CRC32C: u8 = 2;
/// The largest chunk a checksum may cover.
pub const MAX_BYTES_PER_CHECKSUM: u32 = 16 * 1024 * 1024;
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
    /// Offset in the block of the bad chunk's first byte.
    pub offset: u64,
    pub expected: u32,
    pub computed: u32,
}

/// The checksum algorithms HDFS writes (`DataChecksum.Type`, by its ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChecksumKind {
    /// CRC-32 (IEEE), what older clients and the Go client ask for.
    Crc32,
    /// CRC-32C (Castagnoli), HDFS's default and rdfs's.
    Crc32c,
}

impl ChecksumKind {
    /// HDFS's type id (`DataChecksum.Type.id`), as meta files store it.
    pub fn id(self) -> u8 {
        match self {
            Self::Crc32 => CHECKSUM_TYPE_CRC32,
            Self::Crc32c => CHECKSUM_TYPE_CRC32C,
        }
    }

    pub fn from_id(id: u8) -> Option<Self> {
        match id {
            CHECKSUM_TYPE_CRC32 => Some(Self::Crc32),
            CHECKSUM_TYPE_CRC32C => Some(Self::Crc32c),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Crc32 => "CRC32",
            Self::Crc32c => "CRC32C",
        }
    }

    /// The checksum of `data`.
    pub fn checksum(self, data: &[u8]) -> u32 {
        self.extend(0, data)
    }

    /// The checksum of the bytes `crc` covers followed by `data`: a partial
    /// chunk's stored checksum grows as the chunk does, without reading it
    /// back.
    pub fn extend(self, crc: u32, data: &[u8]) -> u32 {
        match self {
            Self::Crc32 => {
                let mut hasher = crc32fast::Hasher::new_with_initial(crc);
                hasher.update(data);
                hasher.finalize()
            }
            Self::Crc32c => crc32c::crc32c_append(crc, data),
        }
    }
}

impl std::fmt::Display for ChecksumKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a replica's data is checksummed: the algorithm and the chunk size
/// (HDFS's `DataChecksum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataChecksum {
    pub kind: ChecksumKind,
    pub bytes_per_checksum: u32,
}

/// Why a checksum setting cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChecksumSettingError {
    #[error(
        "checksum type {0} is not supported (CRC32 = {CHECKSUM_TYPE_CRC32}, CRC32C = {CHECKSUM_TYPE_CRC32C})"
    )]
    Type(u8),
    #[error("bytes per checksum {0} is not valid (1 to {MAX_BYTES_PER_CHECKSUM})")]
    BytesPerChecksum(u32),
}

impl DataChecksum {
    pub const fn crc32c(bytes_per_checksum: u32) -> Self {
        Self {
            kind: ChecksumKind::Crc32c,
            bytes_per_checksum,
        }
    }

    /// The setting named by a type id and chunk size, checked.
    pub fn from_id(id: u8, bytes_per_checksum: u32) -> Result<Self, ChecksumSettingError> {
        let kind = ChecksumKind::from_id(id).ok_or(ChecksumSettingError::Type(id))?;
        Self::new(kind, bytes_per_checksum)
    }

    pub fn new(kind: ChecksumKind, bytes_per_checksum: u32) -> Result<Self, ChecksumSettingError> {
        if bytes_per_checksum == 0 || bytes_per_checksum > MAX_BYTES_PER_CHECKSUM {
            return Err(ChecksumSettingError::BytesPerChecksum(bytes_per_checksum));
        }
        Ok(Self {
            kind,
            bytes_per_checksum,
        })
    }

    /// Length in bytes of the checksums covering `data_len` bytes that
    /// start at a chunk boundary.
    pub fn checksums_len(&self, data_len: usize) -> usize {
        data_len.div_ceil(self.bytes_per_checksum as usize) * CHECKSUM_SIZE
    }

    /// Length of the checksums covering `data_len` bytes that start at
    /// `offset_in_block` (see [`chunk_lengths`]).
    pub fn checksums_len_at(&self, offset_in_block: u64, data_len: usize) -> usize {
        chunk_lengths(offset_in_block, data_len, self.bytes_per_checksum).count() * CHECKSUM_SIZE
    }

    /// The checksums of `data` starting at a chunk boundary.
    pub fn compute(&self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.checksums_len(data.len()));
        self.compute_at(data, 0, &mut out);
        out
    }

    /// Appends one big-endian checksum per chunk of `data`, which starts
    /// at `offset_in_block`.
    pub fn compute_at(&self, data: &[u8], offset_in_block: u64, out: &mut impl BufMut) {
        let mut rest = data;
        for len in chunk_lengths(offset_in_block, data.len(), self.bytes_per_checksum) {
            let (chunk, tail) = rest.split_at(len);
            out.put_u32(self.kind.checksum(chunk));
            rest = tail;
        }
    }

    /// Checks every chunk of `data`, which starts at `offset_in_block`,
    /// against `checksums`; a mismatch names its chunk by offset.
    pub fn verify_at(
        &self,
        data: &[u8],
        checksums: &[u8],
        offset_in_block: u64,
    ) -> Result<(), ChecksumMismatch> {
        let mut offset = offset_in_block;
        let mut rest = data;
        for (len, stored) in chunk_lengths(offset_in_block, data.len(), self.bytes_per_checksum)
            .zip(checksums.chunks_exact(CHECKSUM_SIZE))
        {
            let (chunk, tail) = rest.split_at(len);
            rest = tail;
            let expected = u32::from_be_bytes([stored[0], stored[1], stored[2], stored[3]]);
            let computed = self.kind.checksum(chunk);
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
}

impl std::fmt::Display for DataChecksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind, self.bytes_per_checksum)
    }
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
    #[error(
        "checksum type {0} is not supported (CRC32 = {CHECKSUM_TYPE_CRC32}, CRC32C = {CHECKSUM_TYPE_CRC32C})"
    )]
    ChecksumType(u8),
    #[error("bytes per checksum {0} is not valid")]
    BytesPerChecksum(u32),
}

impl MetaHeader {
    pub fn new(checksum: DataChecksum) -> Self {
        Self {
            version: META_VERSION,
            checksum_type: checksum.kind.id(),
            bytes_per_checksum: checksum.bytes_per_checksum,
        }
    }

    /// The replica's checksum setting (checked by [`MetaHeader::decode`]).
    pub fn checksum(&self) -> DataChecksum {
        DataChecksum {
            kind: ChecksumKind::from_id(self.checksum_type).unwrap_or(ChecksumKind::Crc32c),
            bytes_per_checksum: self.bytes_per_checksum,
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
        if ChecksumKind::from_id(checksum_type).is_none() {
            return Err(MetaHeaderError::ChecksumType(checksum_type));
        }
        if bytes_per_checksum == 0 || bytes_per_checksum > MAX_BYTES_PER_CHECKSUM {
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
        META_HEADER_LEN as u64 + self.checksum().checksums_len(block_len as usize) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CRC32C_512: DataChecksum = DataChecksum::crc32c(512);

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
        CRC32C_512.compute_at(&data, 700, &mut sums);
        assert_eq!(sums.len(), CRC32C_512.checksums_len_at(700, 1000));
        CRC32C_512.verify_at(&data, &sums, 700).expect("verifies");
        let mut bad = sums.clone();
        bad[4] ^= 1;
        assert_eq!(
            CRC32C_512.verify_at(&data, &bad, 700).unwrap_err().offset,
            1024
        );
    }

    #[test]
    fn a_partial_chunk_checksum_extends_to_the_whole_chunk() {
        let data: Vec<u8> = (0..700u32).map(|i| (i * 7) as u8).collect();
        for kind in [ChecksumKind::Crc32, ChecksumKind::Crc32c] {
            let partial = kind.checksum(&data[..188]);
            assert_eq!(kind.extend(partial, &data[188..]), kind.checksum(&data));
        }
        // The standard check values of both algorithms.
        assert_eq!(ChecksumKind::Crc32.checksum(b"123456789"), 0xcbf4_3926);
        assert_eq!(ChecksumKind::Crc32c.checksum(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn detects_a_flipped_bit_and_names_its_chunk() {
        for kind in [ChecksumKind::Crc32, ChecksumKind::Crc32c] {
            let checksum = DataChecksum::new(kind, 512).expect("valid");
            let mut data = vec![7u8; 2000];
            let sums = checksum.compute(&data);
            assert_eq!(sums.len(), 16);
            checksum
                .verify_at(&data, &sums, 0)
                .expect("clean data verifies");
            data[1500] ^= 1;
            let err = checksum
                .verify_at(&data, &sums, 4096)
                .expect_err("flipped bit is caught");
            assert_eq!(err.offset, 4096 + 1024);
        }
    }

    #[test]
    fn settings_are_checked() {
        assert_eq!(
            DataChecksum::from_id(1, 1024),
            Ok(DataChecksum {
                kind: ChecksumKind::Crc32,
                bytes_per_checksum: 1024
            })
        );
        assert_eq!(
            DataChecksum::from_id(3, 512),
            Err(ChecksumSettingError::Type(3))
        );
        assert_eq!(
            DataChecksum::from_id(2, 0),
            Err(ChecksumSettingError::BytesPerChecksum(0))
        );
    }

    #[test]
    fn meta_header_round_trips_and_rejects_garbage() {
        let header = MetaHeader::new(CRC32C_512);
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
            MetaHeader::decode(&[0, 1, 3, 0, 0, 2, 0]),
            Err(MetaHeaderError::ChecksumType(3))
        );
        let crc32 = MetaHeader::decode(&[0, 1, 1, 0, 0, 4, 0]).expect("CRC32 header");
        assert_eq!(
            crc32.checksum(),
            DataChecksum {
                kind: ChecksumKind::Crc32,
                bytes_per_checksum: 1024
            }
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
        fn computed_checksums_verify(
            data in proptest::collection::vec(any::<u8>(), 0..5000),
            bpc in 1u32..1024,
            offset in 0u64..4096,
            crc32 in any::<bool>(),
        ) {
            let kind = if crc32 { ChecksumKind::Crc32 } else { ChecksumKind::Crc32c };
            let checksum = DataChecksum::new(kind, bpc).expect("valid");
            let mut sums = Vec::new();
            checksum.compute_at(&data, offset, &mut sums);
            prop_assert_eq!(sums.len(), checksum.checksums_len_at(offset, data.len()));
            prop_assert!(checksum.verify_at(&data, &sums, offset).is_ok());
        }
    }
}
