//! Category lookup: the text value a step or an encoder knows, to what it stands for.
//!
//! Categories are short ("Focus", "Manual"), and the lookups run once per text value of every
//! row, so a key is compared as its length and two machine words, not with `memcmp`, and hashed
//! from the same two words instead of byte by byte. The keys come from the bundle, never from a
//! request: the longest probe a value can cause is fixed when the table is built.

/// A key's length and two words that, for keys of up to 16 bytes, hold every byte: the first and
/// last 8 bytes (overlapping below 16), the first and last 4 below 8, three picked bytes below 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Words {
    len: usize,
    head: u64,
    tail: u64,
}

/// Keys up to this long are equal when their [`Words`] are.
const WHOLE: usize = 16;

impl Words {
    #[inline]
    fn of(bytes: &[u8]) -> Words {
        let len = bytes.len();
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let half = |at: usize| u64::from(u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")));
        let (head, tail) = match len {
            8.. => (word(0), word(len - 8)),
            4..=7 => (half(0), half(len - 4)),
            1..=3 => {
                let byte = |at: usize| u64::from(bytes[at]);
                (byte(0) | byte(len / 2) << 8 | byte(len - 1) << 16, 0)
            }
            0 => (0, 0),
        };
        Words { len, head, tail }
    }

    #[inline]
    fn hash(self) -> u64 {
        (self.head ^ self.tail.rotate_left(29) ^ self.len as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

#[derive(Debug, Clone)]
struct Entry<V> {
    words: Words,
    key: Box<str>,
    value: V,
}

impl<V> Entry<V> {
    #[inline]
    fn is(&self, words: Words, key: &str) -> bool {
        self.words == words && (words.len <= WHOLE || &*self.key == key)
    }
}

/// Up to this many keys are scanned instead of hashed.
const SCAN_AT_MOST: usize = 8;
/// An empty slot of the hash table.
const EMPTY: u32 = u32::MAX;

#[derive(Debug, Clone)]
pub(super) struct Lookup<V> {
    entries: Vec<Entry<V>>,
    /// Open addressing with linear probes, at most half full: indices into `entries`. Empty for a
    /// lookup that scans.
    slots: Vec<u32>,
    /// `64 - log2(slots.len())`: a hash's top bits pick its first slot.
    shift: u32,
}

impl<V> Lookup<V> {
    #[inline]
    pub(super) fn get(&self, key: &str) -> Option<&V> {
        let words = Words::of(key.as_bytes());
        if self.slots.is_empty() {
            return self.entries.iter().find(|e| e.is(words, key)).map(|e| &e.value);
        }
        let mask = self.slots.len() - 1;
        let mut slot = (words.hash() >> self.shift) as usize;
        loop {
            let index = self.slots[slot];
            if index == EMPTY {
                return None;
            }
            let entry = &self.entries[index as usize];
            if entry.is(words, key) {
                return Some(&entry.value);
            }
            slot = (slot + 1) & mask;
        }
    }

    pub(super) fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
}

impl<V> FromIterator<(String, V)> for Lookup<V> {
    fn from_iter<I: IntoIterator<Item = (String, V)>>(iter: I) -> Self {
        let mut entries: Vec<Entry<V>> = Vec::new();
        for (key, value) in iter {
            let words = Words::of(key.as_bytes());
            // Later duplicates win, as with a map.
            match entries.iter_mut().find(|e| e.is(words, &key)) {
                Some(entry) => entry.value = value,
                None => entries.push(Entry {
                    words,
                    key: key.into_boxed_str(),
                    value,
                }),
            }
        }
        if entries.len() <= SCAN_AT_MOST {
            return Lookup {
                entries,
                slots: Vec::new(),
                shift: 0,
            };
        }
        let size = (2 * entries.len()).next_power_of_two();
        let shift = 64 - size.trailing_zeros();
        let mut slots = vec![EMPTY; size];
        for (index, entry) in entries.iter().enumerate() {
            let mut slot = (entry.words.hash() >> shift) as usize;
            while slots[slot] != EMPTY {
                slot = (slot + 1) & (size - 1);
            }
            slots[slot] = u32::try_from(index).expect("fewer than 2^32 categories");
        }
        Lookup { entries, slots, shift }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length up to past the whole-key limit, keys that differ in one byte anywhere, and
    /// keys that share the words and differ only in the middle (longer than 16 bytes).
    #[test]
    fn finds_exactly_its_keys_scanned_or_hashed() {
        let mut keys: Vec<String> = vec![String::new()];
        for len in 1..=24 {
            let base: String = (0..len).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            keys.push(base.clone());
            for at in 0..len {
                let mut bytes = base.clone().into_bytes();
                bytes[at] = b'Z';
                keys.push(String::from_utf8(bytes).unwrap());
            }
        }
        keys.push("Grand Tourneo Connect".into());
        keys.push("Tourneo Connect".into());
        keys.push("Ä".into());
        for size in [1, SCAN_AT_MOST, SCAN_AT_MOST + 1, keys.len()] {
            let (known, unknown) = keys.split_at(size);
            let lookup: Lookup<usize> = known.iter().cloned().zip(0..).collect();
            assert_eq!(lookup.slots.is_empty(), size <= SCAN_AT_MOST);
            for (i, key) in known.iter().enumerate() {
                assert_eq!(lookup.get(key), Some(&i), "{key:?}");
            }
            for key in unknown {
                assert_eq!(lookup.get(key), None, "{key:?} among {size}");
                assert!(!lookup.contains(key));
            }
        }
        let duplicates: Lookup<u8> = [("a".to_owned(), 1), ("a".to_owned(), 2)].into_iter().collect();
        assert_eq!(duplicates.get("a"), Some(&2));
    }
}
