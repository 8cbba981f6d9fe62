//! [`StreamTable`]: the TCP streams a loop owns, addressed by [`StreamId`].
//!
//! Ids are handed out from a counter that only grows (wrapping at 2^32), and an id's slot
//! is the id modulo the table's power-of-two size. An insert skips ids whose slot is taken,
//! so no two live streams share an id, and a closed stream's id comes back only after 2^32
//! more ids: a driver holding a stale id (a transaction that outlived its connection)
//! cannot reach a stream opened since, however fast connections churn.

use super::StreamId;

/// Streams by id. The slots are allocated once, on the first insert; nothing allocates
/// afterwards.
#[derive(Debug)]
pub(crate) struct StreamTable<T> {
    slots: Vec<Option<(u32, T)>>,
    /// Most streams held at once.
    limit: usize,
    /// The next id to try.
    next: u32,
    len: usize,
}

impl<T> StreamTable<T> {
    /// An empty table holding at most `limit` streams (at most 2^31).
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            slots: Vec::new(),
            limit: limit.min(1 << 31),
            next: 0,
            len: 0,
        }
    }

    fn mask(&self) -> usize {
        self.slots.len().saturating_sub(1)
    }

    /// Store `entry` under a fresh id, or give it back when the table is full.
    pub(crate) fn insert(&mut self, entry: T) -> Result<StreamId, T> {
        if self.len >= self.limit {
            return Err(entry);
        }
        if self.slots.is_empty() {
            self.slots
                .resize_with(self.limit.max(1).next_power_of_two(), || None);
        }
        let mask = self.mask();
        // A free slot exists (len < limit <= slots), so this ends within slots.len() steps.
        for _ in 0..self.slots.len() {
            let id = self.next;
            self.next = self.next.wrapping_add(1);
            if let Some(slot @ None) = self.slots.get_mut(id as usize & mask) {
                *slot = Some((id, entry));
                self.len += 1;
                return Ok(StreamId(id));
            }
        }
        Err(entry)
    }

    /// The entry for `id`, if it is still held.
    pub(crate) fn get(&self, id: StreamId) -> Option<&T> {
        match self.slots.get(id.0 as usize & self.mask())? {
            Some((held, entry)) if *held == id.0 => Some(entry),
            _ => None,
        }
    }

    /// The entry for `id`, mutably, if it is still held.
    pub(crate) fn get_mut(&mut self, id: StreamId) -> Option<&mut T> {
        let mask = self.mask();
        match self.slots.get_mut(id.0 as usize & mask)? {
            Some((held, entry)) if *held == id.0 => Some(entry),
            _ => None,
        }
    }

    /// Remove and return the entry for `id`.
    pub(crate) fn remove(&mut self, id: StreamId) -> Option<T> {
        let mask = self.mask();
        let slot = self.slots.get_mut(id.0 as usize & mask)?;
        if slot.as_ref().is_none_or(|(held, _)| *held != id.0) {
            return None;
        }
        self.len -= 1;
        slot.take().map(|(_, entry)| entry)
    }

    /// How many streams are held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// True when another insert would fail.
    pub(crate) fn is_full(&self) -> bool {
        self.len >= self.limit
    }

    /// Ids of all held streams, in slot order.
    pub(crate) fn ids(&self) -> impl Iterator<Item = StreamId> + '_ {
        self.slots
            .iter()
            .filter_map(|slot| slot.as_ref().map(|(id, _)| StreamId(*id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_never_reused_while_the_counter_has_not_wrapped() {
        let mut table = StreamTable::new(4);
        let mut seen = std::collections::HashSet::new();
        let long_lived = table.insert(u32::MAX).unwrap();
        for n in 0..10_000 {
            let id = table.insert(n).unwrap();
            assert!(seen.insert(id), "id {id:?} handed out twice");
            assert_eq!(table.get(id), Some(&n));
            assert_eq!(table.remove(id), Some(n));
            assert_eq!(table.get(id), None, "a removed id still resolves");
        }
        assert_eq!(table.get(long_lived), Some(&u32::MAX));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn the_limit_holds_and_frees_up() {
        let mut table = StreamTable::new(3);
        let ids: Vec<_> = (0..3).map(|n| table.insert(n).unwrap()).collect();
        assert!(table.is_full());
        assert_eq!(table.insert(9), Err(9));
        table.remove(ids[1]);
        let again = table.insert(7).unwrap();
        assert!(!ids.contains(&again));
        assert_eq!(table.ids().count(), 3);
        assert_eq!(StreamTable::new(0).insert(1), Err(1));
    }

    #[test]
    fn a_wrapped_counter_skips_ids_still_in_use() {
        let mut table = StreamTable::new(2);
        let first = table.insert("first").unwrap();
        // As if the counter had wrapped round to `first`, which is still open.
        table.next = first.0;
        let second = table.insert("second").unwrap();
        assert_ne!(second, first);
        assert_eq!(table.get(first), Some(&"first"));
        assert_eq!(table.get(second), Some(&"second"));
    }

    #[test]
    fn unknown_ids_are_ignored() {
        let mut table: StreamTable<u8> = StreamTable::new(8);
        assert_eq!(table.get(StreamId(5)), None);
        assert_eq!(table.remove(StreamId(u32::MAX)), None);
        table.insert(1).unwrap();
        assert_eq!(table.get_mut(StreamId(12_345)), None);
        assert_eq!(table.remove(StreamId(8)), None, "same slot, other id");
    }
}
