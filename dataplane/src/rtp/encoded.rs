//! Prompt audio encoded once per law and shared by every call on a core that plays it.
//!
//! Control renders a prompt once and hands every call the same [`Pcm8k`] (its render cache
//! shares the `Arc`). Encoding it to G.711 per call, per packet, repeated the same work for
//! each call: 5 % of a core at 750 calls playing one prompt. [`EncodedCache`] encodes a shared
//! buffer once per law when a call starts playing it, keyed by the buffer's identity; the
//! session then copies 160 octets a packet. Looked up once per `Play`, never per packet.
//!
//! An entry holds a `Weak` to its samples, so a buffer that control dropped is recognised
//! as gone (the allocation stays until the entry is pruned, so its address is not reused
//! while the entry exists). Audio no one else holds (a one-off buffer, a recording) and audio
//! longer than [`MAX_SAMPLES`] get no encoding here: the session encodes those per packet, as
//! before, so the core never allocates for them nor spends a long turn encoding them.
//!
//! The first call to play a prompt pays its whole encoding in one turn (3.3 ns a sample on
//! the 2-core VM: about 1.6 ms at the 60 s bound). Encoding where control renders the prompt,
//! off the core, would remove even that.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use crate::api::{Codec, Pcm8k};
use crate::rtp::g711;

/// Longest buffer encoded here: 60 s at 8 kHz.
pub const MAX_SAMPLES: usize = 60 * 8000;

/// Entries kept at most; past it the dead ones are pruned, and if all are live the new
/// buffer is encoded without being cached.
const MAX_ENTRIES: usize = 512;

/// A buffer's identity (address and length) and the law's payload type.
type Key = (usize, usize, u8);
/// The samples (to tell a live buffer from a dropped one) and their encoding.
type Entry = (Weak<[i16]>, Arc<[u8]>);

/// Encoded prompt audio by buffer identity and law.
#[derive(Debug, Default)]
pub struct EncodedCache {
    entries: HashMap<Key, Entry>,
}

impl EncodedCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// `audio` encoded in `codec`, shared by every call that plays the same buffer; `None`
    /// when no one else holds the buffer or it is longer than [`MAX_SAMPLES`] (the session
    /// then encodes per packet).
    pub fn get(&mut self, audio: &Pcm8k, codec: Codec) -> Option<Arc<[u8]>> {
        if Arc::strong_count(audio) < 2 || audio.len() > MAX_SAMPLES {
            return None;
        }
        let key = (
            Arc::as_ptr(audio).cast::<i16>() as usize,
            audio.len(),
            g711::payload_type(codec),
        );
        if let Some((samples, encoded)) = self.entries.get(&key)
            && samples
                .upgrade()
                .is_some_and(|live| Arc::ptr_eq(&live, audio))
        {
            return Some(Arc::clone(encoded));
        }
        let encoded = encode(audio, codec);
        if self.entries.len() >= MAX_ENTRIES {
            self.entries
                .retain(|_, (samples, _)| samples.strong_count() > 0);
        }
        if self.entries.len() < MAX_ENTRIES {
            self.entries
                .insert(key, (Arc::downgrade(audio), Arc::clone(&encoded)));
        }
        Some(encoded)
    }

    /// Entries held (live or not yet pruned).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn encode(audio: &[i16], codec: Codec) -> Arc<[u8]> {
    let mut out = vec![0u8; audio.len()];
    g711::encode(codec, audio, &mut out);
    Arc::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(samples: usize) -> Pcm8k {
        (0..samples)
            .map(|i| ((i as i32 * 37) % 20_000 - 10_000) as i16)
            .collect()
    }

    #[test]
    fn a_shared_buffer_is_encoded_once_per_law() {
        let mut cache = EncodedCache::new();
        let audio = prompt(800);
        let held_by_control = Arc::clone(&audio);
        let first = cache.get(&audio, Codec::Pcmu).expect("shared");
        let again = cache.get(&audio, Codec::Pcmu).expect("shared");
        assert!(Arc::ptr_eq(&first, &again));
        let alaw = cache.get(&audio, Codec::Pcma).expect("shared");
        assert!(!Arc::ptr_eq(&first, &alaw));
        let mut expected = vec![0u8; 800];
        g711::encode(Codec::Pcma, &audio, &mut expected);
        assert_eq!(&alaw[..], &expected[..]);
        assert_eq!(cache.len(), 2);
        drop(held_by_control);
    }

    #[test]
    fn a_buffer_nobody_shares_or_too_long_is_left_to_the_session_and_dead_ones_are_pruned() {
        let mut cache = EncodedCache::new();
        let alone = prompt(160);
        assert_eq!(cache.get(&alone, Codec::Pcmu), None);
        let long = prompt(MAX_SAMPLES + 1);
        let shared = Arc::clone(&long);
        assert_eq!(cache.get(&long, Codec::Pcmu), None);
        assert!(cache.is_empty());
        drop(shared);
        for _ in 0..MAX_ENTRIES + 10 {
            let audio = prompt(160);
            let other = Arc::clone(&audio);
            cache.get(&audio, Codec::Pcmu);
            drop((audio, other));
        }
        assert!(cache.len() <= MAX_ENTRIES, "{}", cache.len());
    }

    #[test]
    fn equal_samples_in_another_buffer_are_another_entry() {
        let mut cache = EncodedCache::new();
        let (a, b) = (prompt(320), prompt(320));
        let (a2, b2) = (Arc::clone(&a), Arc::clone(&b));
        let ea = cache.get(&a, Codec::Pcmu).expect("shared");
        let eb = cache.get(&b, Codec::Pcmu).expect("shared");
        assert!(!Arc::ptr_eq(&ea, &eb));
        assert_eq!(ea, eb);
        drop((a2, b2));
    }
}
