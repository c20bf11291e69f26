//! A set of a segment's documents, one bit each, and the word-at-a-time
//! operations the search executor ([`super::words`]) runs on it.

use tantivy::DocId;

/// A set of a segment's documents: bit `doc % 64` of word `doc / 64`.
#[derive(Clone)]
pub(super) struct Bits(Vec<u64>);

impl Bits {
    pub fn new(max_doc: DocId) -> Self {
        Self(vec![0; (max_doc as usize).div_ceil(64)])
    }

    pub fn insert(&mut self, doc: DocId) {
        if let Some(word) = self.0.get_mut(doc as usize / 64) {
            *word |= 1 << (doc % 64);
        }
    }

    pub fn contains(&self, doc: DocId) -> bool {
        self.0
            .get(doc as usize / 64)
            .is_some_and(|word| word & (1 << (doc % 64)) != 0)
    }

    pub fn or(&mut self, other: &Self) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a |= b;
        }
    }

    /// What both sets hold, as a new set; None when they hold nothing in
    /// common (one pass; neither is changed).
    pub fn common(&self, other: &Self) -> Option<Self> {
        let mut any = 0;
        let words = self
            .0
            .iter()
            .zip(&other.0)
            .map(|(a, b)| {
                let w = a & b;
                any |= w;
                w
            })
            .collect();
        (any != 0).then_some(Self(words))
    }

    /// Keeps what `other` holds too; whether anything is left.
    pub fn and(&mut self, other: &Self) -> bool {
        let mut any = 0;
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a &= b;
            any |= *a;
        }
        any != 0
    }

    /// Removes every document for which `drop` says so (one call per
    /// document of the set).
    pub fn remove_where(&mut self, mut drop: impl FnMut(DocId) -> bool) {
        for (i, word) in self.0.iter_mut().enumerate() {
            let base = (i as DocId) * 64;
            let mut rest = *word;
            while rest != 0 {
                let bit = rest.trailing_zeros();
                rest &= rest - 1;
                if drop(base + bit) {
                    *word &= !(1 << bit);
                }
            }
        }
    }

    /// How many 64-document words the set spans.
    pub fn words(&self) -> usize {
        self.0.len()
    }

    /// How many documents the set holds.
    pub fn len(&self) -> u64 {
        self.0.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// How many documents both sets hold.
    pub fn count_common(&self, other: &Self) -> u64 {
        self.0
            .iter()
            .zip(&other.0)
            .map(|(a, b)| u64::from((a & b).count_ones()))
            .sum()
    }

    /// The documents, ascending.
    pub fn iter(&self) -> impl Iterator<Item = DocId> + '_ {
        self.0.iter().enumerate().flat_map(|(i, &word)| {
            let base = (i as DocId) * 64;
            let mut rest = word;
            std::iter::from_fn(move || {
                (rest != 0).then(|| {
                    let bit = rest.trailing_zeros();
                    rest &= rest - 1;
                    base + bit
                })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(max_doc: DocId, docs: &[DocId]) -> Bits {
        let mut b = Bits::new(max_doc);
        for &d in docs {
            b.insert(d);
        }
        b
    }

    #[test]
    fn counts_removals_and_intersections_agree_with_the_members() {
        let a = set(200, &[0, 1, 63, 64, 65, 127, 128, 199]);
        let b = set(200, &[1, 64, 128, 150, 199]);
        assert_eq!(a.len(), 8);
        assert_eq!(a.count_common(&b), 4);
        let both = a.common(&b).map(|c| c.iter().collect::<Vec<_>>());
        assert_eq!(both, Some(vec![1, 64, 128, 199]));
        assert!(a.common(&set(200, &[2, 66, 198])).is_none());
        let mut c = set(200, &[0, 1, 63, 64, 65, 127, 128, 199]);
        c.remove_where(|d| d % 2 == 1);
        assert_eq!(c.iter().collect::<Vec<_>>(), vec![0, 64, 128]);
        assert_eq!(c.len(), 3);
        assert!(!c.contains(1) && c.contains(128));
        // Past the end: neither stored nor found.
        let mut d = set(10, &[3]);
        d.insert(500);
        assert_eq!(d.iter().collect::<Vec<_>>(), vec![3]);
        assert!(!d.contains(500));
    }
}
