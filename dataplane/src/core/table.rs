//! [`SocketTable`]: the sockets a loop owns, addressed by [`SocketId`].
//!
//! An id packs a slot index with the slot's generation, so an id kept after
//! [`Io::close`](super::Io::close) never reaches a socket bound later in the same slot.

use super::SocketId;

/// Bits of a [`SocketId`] that hold the slot index: up to 2^20 sockets per loop.
const INDEX_BITS: u32 = 20;
const INDEX_MASK: u32 = (1 << INDEX_BITS) - 1;
/// Generations wrap within the remaining 12 bits.
const GENERATION_MASK: u32 = u32::MAX >> INDEX_BITS;

impl SocketId {
    /// The id's slot in its loop's table: small and dense (a closed socket's slot is the
    /// next one bound), so a driver can index its own per-socket state by it. Two ids may
    /// share a slot at different times; compare the whole id too.
    pub fn slot(self) -> usize {
        (self.0 & INDEX_MASK) as usize
    }
}

/// A slot: its current generation, and the socket if one is bound there.
#[derive(Debug)]
struct Slot<T> {
    generation: u32,
    entry: Option<T>,
}

/// Sockets by generational id. Insertion may grow the table (binding is not per packet);
/// lookups and removal never allocate.
#[derive(Debug)]
pub(crate) struct SocketTable<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> SocketTable<T> {
    /// An empty table.
    pub(crate) fn new() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    /// Store `entry` and return its id, or `None` when all 2^20 slots are taken.
    pub(crate) fn insert(&mut self, entry: T) -> Option<SocketId> {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                let index = u32::try_from(self.slots.len())
                    .ok()
                    .filter(|&i| i <= INDEX_MASK)?;
                self.slots.push(Slot {
                    generation: 0,
                    entry: None,
                });
                index
            }
        };
        let slot = self.slots.get_mut(index as usize)?;
        slot.entry = Some(entry);
        self.len += 1;
        Some(SocketId(slot.generation << INDEX_BITS | index))
    }

    /// The entry for `id`, if it is still bound.
    pub(crate) fn get(&self, id: SocketId) -> Option<&T> {
        let slot = self.slots.get((id.0 & INDEX_MASK) as usize)?;
        if slot.generation != id.0 >> INDEX_BITS {
            return None;
        }
        slot.entry.as_ref()
    }

    /// The entry for `id`, mutably, if it is still bound.
    pub(crate) fn get_mut(&mut self, id: SocketId) -> Option<&mut T> {
        let slot = self.slots.get_mut((id.0 & INDEX_MASK) as usize)?;
        if slot.generation != id.0 >> INDEX_BITS {
            return None;
        }
        slot.entry.as_mut()
    }

    /// Remove and return the entry for `id`; the slot's next occupant gets a new generation.
    pub(crate) fn remove(&mut self, id: SocketId) -> Option<T> {
        let index = id.0 & INDEX_MASK;
        let slot = self.slots.get_mut(index as usize)?;
        if slot.generation != id.0 >> INDEX_BITS {
            return None;
        }
        let entry = slot.entry.take()?;
        slot.generation = (slot.generation + 1) & GENERATION_MASK;
        self.free.push(index);
        self.len -= 1;
        Some(entry)
    }

    /// How many sockets are bound.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Ids of all bound sockets, in slot order.
    pub(crate) fn ids(&self) -> impl Iterator<Item = SocketId> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.entry.is_some())
            .map(|(index, slot)| {
                // invariant: slots.len() never exceeds INDEX_MASK + 1, checked in insert.
                SocketId(slot.generation << INDEX_BITS | index as u32)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_ids_miss_the_new_occupant() {
        let mut table = SocketTable::new();
        let first = table.insert("a").unwrap();
        assert_eq!(table.remove(first), Some("a"));
        let second = table.insert("b").unwrap();
        assert_ne!(first, second, "a reused slot must get a new id");
        assert_eq!(table.get(first), None);
        assert_eq!(table.remove(first), None);
        assert_eq!(table.get(second), Some(&"b"));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn unknown_ids_are_ignored() {
        let mut table: SocketTable<u8> = SocketTable::new();
        assert_eq!(table.get(SocketId(12345)), None);
        assert_eq!(table.get_mut(SocketId(u32::MAX)), None);
        assert_eq!(table.remove(SocketId(0)), None);
    }

    #[test]
    fn ids_lists_bound_sockets() {
        let mut table = SocketTable::new();
        let ids: Vec<_> = (0..5).map(|n| table.insert(n).unwrap()).collect();
        table.remove(ids[2]);
        let listed: Vec<_> = table.ids().collect();
        assert_eq!(listed, vec![ids[0], ids[1], ids[3], ids[4]]);
    }

    #[test]
    fn generation_wraps_without_panicking() {
        let mut table = SocketTable::new();
        let mut previous = table.insert(0u32).unwrap();
        for n in 1..(GENERATION_MASK + 5) {
            table.remove(previous);
            previous = table.insert(n).unwrap();
            assert_eq!(previous.0 & INDEX_MASK, 0);
        }
        assert_eq!(table.get(previous), Some(&(GENERATION_MASK + 4)));
    }
}
