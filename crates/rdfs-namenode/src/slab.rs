//! A generational slab: fixed-size records in one vector, addressed by a
//! `u32` slot, with ids that are never reused.
//!
//! An id is `base + (generation << 32 | slot)`. A slot freed and used again
//! gets the next generation, so a stale id can never name the new record,
//! while lookups stay a bounds check and a compare: no hash table. A fresh
//! namespace allocates slots 0, 1, 2, ... at generation 0, so its ids run
//! sequentially from `base` exactly as HDFS's do.

/// Generations use 30 bits, keeping every id below 2^63 (a Java long).
pub const MAX_GENERATION: u32 = (1 << 30) - 1;
const LIVE: u32 = 1 << 31;
const GENERATION_MASK: u32 = LIVE - 1;

#[derive(Debug, Clone)]
pub struct GenSlab<T> {
    base: u64,
    entries: Vec<T>,
    /// Per slot: bit 31 set while occupied; bits 0..30 the generation the
    /// next occupant of the slot gets.
    generations: Vec<u32>,
    /// Free slots; may hold stale entries (slots re-occupied by an explicit
    /// insert), skipped when popped.
    free: Vec<u32>,
    len: usize,
}

/// Why an id cannot be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlabError {
    #[error("id {0} is not one this table hands out")]
    BelowBase(u64),
    #[error("id {id} is already in use")]
    Occupied { id: u64 },
    #[error("id {id} belongs to a generation already used for its slot")]
    StaleGeneration { id: u64 },
    #[error("no more ids: every slot is at its last generation")]
    Exhausted,
}

impl<T: Default + Clone> GenSlab<T> {
    pub fn new(base: u64) -> Self {
        Self {
            base,
            entries: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    /// Live records.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Slots ever used (live or free).
    pub fn slots(&self) -> usize {
        self.entries.len()
    }

    pub fn id_of(&self, slot: u32) -> u64 {
        let generation = (self.generations[slot as usize] & GENERATION_MASK).saturating_sub(1);
        self.base + ((u64::from(generation) << 32) | u64::from(slot))
    }

    /// (generation, slot) of an id; `None` for ids this table never hands out.
    fn split(&self, id: u64) -> Option<(u32, u32)> {
        let offset = id.checked_sub(self.base)?;
        let generation = u32::try_from(offset >> 32)
            .ok()
            .filter(|g| *g <= MAX_GENERATION)?;
        Some((generation, offset as u32))
    }

    /// The slot holding `id`, if it is live.
    pub fn slot(&self, id: u64) -> Option<u32> {
        let (generation, slot) = self.split(id)?;
        let state = *self.generations.get(slot as usize)?;
        (state == LIVE | (generation + 1)).then_some(slot)
    }

    pub fn is_live(&self, slot: u32) -> bool {
        self.generations
            .get(slot as usize)
            .is_some_and(|g| g & LIVE != 0)
    }

    pub fn get(&self, slot: u32) -> &T {
        &self.entries[slot as usize]
    }

    pub fn get_mut(&mut self, slot: u32) -> &mut T {
        &mut self.entries[slot as usize]
    }

    /// The id the next [`GenSlab::allocate`] will return.
    pub fn peek_next(&mut self) -> Result<u64, SlabError> {
        while let Some(&slot) = self.free.last() {
            let state = self.generations[slot as usize];
            if state & LIVE != 0 || state & GENERATION_MASK > MAX_GENERATION {
                // Re-occupied by an explicit insert, or retired.
                self.free.pop();
                continue;
            }
            return Ok(self.base + ((u64::from(state & GENERATION_MASK) << 32) | u64::from(slot)));
        }
        let slot = u32::try_from(self.entries.len()).map_err(|_| SlabError::Exhausted)?;
        Ok(self.base + u64::from(slot))
    }

    /// Places `value` under `id`, which must be free and newer than every id
    /// its slot held before (true of ids from [`GenSlab::peek_next`] and of
    /// edits replayed in order).
    pub fn insert(&mut self, id: u64, value: T) -> Result<u32, SlabError> {
        let (generation, slot) = self.split(id).ok_or(SlabError::BelowBase(id))?;
        let index = slot as usize;
        if index >= self.entries.len() {
            // Slots skipped over are free and never used.
            for skipped in self.entries.len()..index {
                self.free.push(skipped as u32);
            }
            self.entries.resize(index + 1, T::default());
            self.generations.resize(index + 1, 0);
        }
        let state = self.generations[index];
        if state & LIVE != 0 {
            return Err(SlabError::Occupied { id });
        }
        if generation < state & GENERATION_MASK {
            return Err(SlabError::StaleGeneration { id });
        }
        self.generations[index] = LIVE | (generation + 1);
        self.entries[index] = value;
        self.len += 1;
        // Allocation peeks at the free list's top; take it off now it is used.
        if self.free.last() == Some(&slot) {
            self.free.pop();
        }
        Ok(slot)
    }

    /// Frees a slot; its record is reset so it holds nothing.
    pub fn remove(&mut self, slot: u32) -> T {
        let index = slot as usize;
        self.generations[index] &= GENERATION_MASK;
        self.len -= 1;
        if self.generations[index] <= MAX_GENERATION {
            self.free.push(slot);
        }
        std::mem::take(&mut self.entries[index])
    }

    /// Live slots in slot order.
    pub fn live_slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.generations
            .iter()
            .enumerate()
            .filter(|(_, g)| *g & LIVE != 0)
            .map(|(i, _)| i as u32)
    }

    /// The raw generation table, for the fsimage.
    pub fn generations(&self) -> &[u32] {
        &self.generations
    }

    /// Rebuilds a slab from an fsimage: the generation table, then each live
    /// record put back with [`GenSlab::restore`].
    pub fn with_generations(base: u64, generations: Vec<u32>) -> Self {
        let slots = generations.len();
        let free = (0..slots as u32)
            .rev()
            .filter(|s| generations[*s as usize] & LIVE == 0)
            .collect();
        let len = generations.iter().filter(|g| *g & LIVE != 0).count();
        Self {
            base,
            entries: vec![T::default(); slots],
            generations,
            free,
            len,
        }
    }

    /// Puts back a record of a slot that the generation table marks live.
    pub fn restore(&mut self, slot: u32, value: T) -> bool {
        match self.generations.get(slot as usize) {
            Some(state) if state & LIVE != 0 => {
                self.entries[slot as usize] = value;
                true
            }
            _ => false,
        }
    }

    /// Bytes held by the slab itself.
    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<T>()
            + self.generations.capacity() * 4
            + self.free.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_sequential_then_never_reused() {
        let mut slab: GenSlab<u64> = GenSlab::new(100);
        for expected in 100..105 {
            let id = slab.peek_next().expect("id");
            assert_eq!(id, expected);
            slab.insert(id, id * 10).expect("insert");
        }
        let slot = slab.slot(102).expect("live");
        assert_eq!(*slab.get(slot), 1020);
        slab.remove(slot);
        assert_eq!(slab.slot(102), None, "a freed id no longer resolves");
        let reused = slab.peek_next().expect("id");
        assert_eq!(reused, 100 + (1 << 32) + 2, "same slot, next generation");
        slab.insert(reused, 7).expect("insert");
        assert_eq!(slab.slot(102), None, "the old id still does not resolve");
        assert_eq!(slab.slot(reused), Some(2));
        assert_eq!(slab.id_of(2), reused);
        assert_eq!(
            slab.insert(reused, 8),
            Err(SlabError::Occupied { id: reused })
        );
        assert_eq!(slab.len(), 5);
    }

    #[test]
    fn replayed_inserts_and_restored_tables_agree_with_live_allocation() {
        let mut live: GenSlab<u32> = GenSlab::new(0);
        let mut ids = Vec::new();
        for i in 0..10 {
            let id = live.peek_next().expect("id");
            live.insert(id, i).expect("insert");
            ids.push(id);
        }
        for id in ids.iter().step_by(3) {
            let slot = live.slot(*id).expect("slot");
            live.remove(slot);
        }
        // Replay the same history with explicit ids.
        let mut replayed: GenSlab<u32> = GenSlab::new(0);
        for (i, id) in ids.iter().enumerate() {
            replayed.insert(*id, i as u32).expect("replay");
        }
        for id in ids.iter().step_by(3) {
            let slot = replayed.slot(*id).expect("slot");
            replayed.remove(slot);
        }
        assert_eq!(live.generations(), replayed.generations());
        // A table rebuilt from the generations hands out an id never used.
        let mut restored: GenSlab<u32> = GenSlab::with_generations(0, live.generations().to_vec());
        for slot in live.live_slots().collect::<Vec<_>>() {
            assert!(restored.restore(slot, *live.get(slot)));
        }
        let next = restored.peek_next().expect("id");
        assert!(!ids.contains(&next), "{next} was used before");
        assert_eq!(restored.len(), live.len());
        // Inserting an id older than its slot's history is refused.
        let old = ids[0];
        assert!(matches!(
            restored.insert(old, 1),
            Err(SlabError::StaleGeneration { .. })
        ));
    }
}
