//! Inode names, stored back to back in an arena of 1 MiB chunks and named
//! by a packed 8-byte reference, instead of one heap allocation per name
//! (which costs a pointer, a length and the allocator's overhead).
//!
//! Names freed by deletes and renames are counted; when they pass half of
//! the arena the owner rebuilds it from the live names
//! ([`NameArena::should_compact`]).

/// HDFS caps a path component at 255 bytes, so a length fits in a byte.
pub const MAX_NAME_LEN: usize = 255;
const CHUNK: usize = 1 << 20;

/// Where a name lives: byte offset (56 bits) and length (8 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct NameRef(u64);

impl NameRef {
    fn new(offset: u64, len: usize) -> Self {
        NameRef((offset << 8) | len as u64)
    }

    fn offset(self) -> u64 {
        self.0 >> 8
    }

    pub fn len(self) -> usize {
        (self.0 & 0xff) as usize
    }

    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Default)]
pub struct NameArena {
    chunks: Vec<Box<[u8]>>,
    /// Bytes used in the last chunk.
    tail: usize,
    live_bytes: usize,
    garbage_bytes: usize,
}

impl NameArena {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores a name (at most [`MAX_NAME_LEN`] bytes; longer ones are cut,
    /// which path validation never lets happen).
    pub fn add(&mut self, name: &[u8]) -> NameRef {
        let name = &name[..name.len().min(MAX_NAME_LEN)];
        if name.is_empty() {
            return NameRef::default();
        }
        if self.chunks.is_empty() || self.tail + name.len() > CHUNK {
            self.chunks.push(vec![0u8; CHUNK].into_boxed_slice());
            self.tail = 0;
        }
        let chunk = self.chunks.len() - 1;
        self.chunks[chunk][self.tail..self.tail + name.len()].copy_from_slice(name);
        let offset = (chunk * CHUNK + self.tail) as u64;
        self.tail += name.len();
        self.live_bytes += name.len();
        NameRef::new(offset, name.len())
    }

    pub fn get(&self, name: NameRef) -> &[u8] {
        if name.is_empty() {
            return &[];
        }
        let offset = name.offset() as usize;
        let (chunk, start) = (offset / CHUNK, offset % CHUNK);
        &self.chunks[chunk][start..start + name.len()]
    }

    /// A name no longer used.
    pub fn release(&mut self, name: NameRef) {
        self.live_bytes -= name.len().min(self.live_bytes);
        self.garbage_bytes += name.len();
    }

    /// True when at least half of the arena holds released names.
    pub fn should_compact(&self) -> bool {
        self.garbage_bytes > CHUNK && self.garbage_bytes > self.live_bytes
    }

    pub fn heap_bytes(&self) -> usize {
        self.chunks.len() * CHUNK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_across_chunks() {
        let mut arena = NameArena::new();
        let mut refs = Vec::new();
        for i in 0..20_000 {
            let name = format!("part-{i:05}-{}", "x".repeat(i % 90));
            refs.push((arena.add(name.as_bytes()), name));
        }
        assert!(arena.chunks.len() > 1);
        for (r, name) in &refs {
            assert_eq!(arena.get(*r), name.as_bytes());
        }
        let empty = arena.add(b"");
        assert_eq!(arena.get(empty), b"");
        for (r, _) in &refs {
            arena.release(*r);
        }
        assert!(arena.should_compact());
    }
}
