//! An in-memory inverted index of product names: the candidate search design
//! that does not grow with the catalog (see `docs/search.md`).
//!
//! Every distinct word of the folded names is a vocabulary entry with its
//! postings (the documents containing it, ascending). A query word matches
//! the vocabulary entries that contain it (substring, the contract's "occurs
//! in the name": a query word holds no whitespace, so it can only occur
//! inside one word of a name). A search walks the postings of its rarest
//! query word in document (= id) order and checks each candidate against
//! the other words and the filters through a forward index (each document's
//! words), stopping once it has the page and [`TOTAL_BOUND`] + 1 matches.
//! So a request costs at most the rarest word's postings, never the
//! catalog; a search without words walks its category's documents, or all
//! documents for a price filter alone (a memory scan, still bounded by the
//! count's stop).
//!
//! Documents must be added in ascending id order (a load `ORDER BY id`).

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
};

use crate::search::{Search, TOTAL_BOUND, Total};

/// A document number: the position of a product in id order.
type Doc = u32;

/// The index. Memory: about 8 bytes per name word plus 20 per product.
#[derive(Debug, Default)]
pub struct SearchIndex {
    /// Product id of each document, ascending.
    ids: Vec<i64>,
    prices: Vec<i64>,
    categories: Vec<u32>,
    category_ids: HashMap<String, u32>,
    /// Documents of each category, ascending.
    category_docs: Vec<Vec<Doc>>,
    /// Distinct name words.
    vocab: Vec<String>,
    word_ids: HashMap<String, u32>,
    /// Documents containing each vocabulary word, ascending.
    postings: Vec<Vec<Doc>>,
    /// Forward index: the words of document `d` are
    /// `doc_words[doc_starts[d]..doc_starts[d + 1]]`.
    doc_words: Vec<u32>,
    doc_starts: Vec<u32>,
}

/// Why a product could not be added.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IndexError {
    #[error("product {id} added after {last}: ids must ascend")]
    OutOfOrder { id: i64, last: i64 },
    #[error("the index holds at most 2^32 - 1 products or name words")]
    Full,
}

/// A query word's matching vocabulary entries: their numbers, and the same
/// as a bit set over the vocabulary (one bit per word: checking a document's
/// words against it is a shift and a mask, no hashing).
struct Term {
    words: Vec<u32>,
    bits: Vec<u64>,
    postings: usize,
}

impl Term {
    fn contains(&self, word: u32) -> bool {
        let w = word as usize;
        self.bits
            .get(w / 64)
            .is_some_and(|b| b & (1 << (w % 64)) != 0)
    }
}

impl SearchIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self {
            doc_starts: vec![0],
            ..Self::default()
        }
    }

    /// Products indexed.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Adds a product; `name_search` is its folded name.
    pub fn add(
        &mut self,
        id: i64,
        name_search: &str,
        category: &str,
        price_cents: i64,
    ) -> Result<(), IndexError> {
        if let Some(&last) = self.ids.last()
            && id <= last
        {
            return Err(IndexError::OutOfOrder { id, last });
        }
        let doc = Doc::try_from(self.ids.len()).map_err(|_| IndexError::Full)?;
        let category = match self.category_ids.get(category) {
            Some(&c) => c,
            None => {
                let c = u32::try_from(self.category_docs.len()).map_err(|_| IndexError::Full)?;
                self.category_ids.insert(category.to_owned(), c);
                self.category_docs.push(Vec::new());
                c
            }
        };
        let mut seen: Vec<u32> = Vec::new();
        for word in name_search.split_whitespace() {
            let w = match self.word_ids.get(word) {
                Some(&w) => w,
                None => {
                    let w = u32::try_from(self.vocab.len()).map_err(|_| IndexError::Full)?;
                    self.word_ids.insert(word.to_owned(), w);
                    self.vocab.push(word.to_owned());
                    self.postings.push(Vec::new());
                    w
                }
            };
            if !seen.contains(&w) {
                seen.push(w);
            }
        }
        let end = u32::try_from(self.doc_words.len() + seen.len()).map_err(|_| IndexError::Full)?;
        for &w in &seen {
            // `w` indexes `postings`: pushed above when the word was new.
            if let Some(list) = self.postings.get_mut(w as usize) {
                list.push(doc);
            }
        }
        self.doc_words.extend_from_slice(&seen);
        self.doc_starts.push(end);
        if let Some(list) = self.category_docs.get_mut(category as usize) {
            list.push(doc);
        }
        self.ids.push(id);
        self.prices.push(price_cents);
        self.categories.push(category);
        Ok(())
    }

    /// Gives back the spare capacity of every list (growing by doubling
    /// leaves up to half of each unused): call once a build is complete.
    pub fn shrink_to_fit(&mut self) {
        self.ids.shrink_to_fit();
        self.prices.shrink_to_fit();
        self.categories.shrink_to_fit();
        self.category_docs.iter_mut().for_each(Vec::shrink_to_fit);
        self.postings.iter_mut().for_each(Vec::shrink_to_fit);
        self.doc_words.shrink_to_fit();
        self.doc_starts.shrink_to_fit();
    }

    fn term(&self, query_word: &str) -> Term {
        let mut words = Vec::new();
        let mut bits = vec![0u64; self.vocab.len().div_ceil(64)];
        let mut postings = 0;
        for (w, word) in self.vocab.iter().enumerate() {
            if word.contains(query_word) {
                // `w` < vocab.len() <= u32::MAX (checked in `add`).
                words.push(w as u32);
                bits[w / 64] |= 1 << (w % 64);
                postings += self.postings[w].len();
            }
        }
        Term {
            words,
            bits,
            postings,
        }
    }

    /// A term's documents, ascending.
    fn union<'a>(&'a self, term: &'a Term) -> Box<dyn Iterator<Item = Doc> + 'a> {
        match term.words.as_slice() {
            [w] => Box::new(self.postings[*w as usize].iter().copied()),
            words => Box::new(Merged::new(
                words.iter().map(|&w| self.postings[w as usize].as_slice()),
            )),
        }
    }

    fn doc_has(&self, doc: Doc, term: &Term) -> bool {
        let d = doc as usize;
        let (start, end) = (self.doc_starts[d] as usize, self.doc_starts[d + 1] as usize);
        self.doc_words[start..end].iter().any(|&w| term.contains(w))
    }

    /// The page's product ids (ascending) and the bounded total.
    pub fn search(&self, search: &Search) -> (Vec<i64>, Total) {
        let category = match &search.category {
            Some(name) => match self.category_ids.get(name) {
                Some(&c) => Some(c),
                None => return (Vec::new(), Total::Exact(0)),
            },
            None => None,
        };
        let mut terms: Vec<Term> = search.words.iter().map(|w| self.term(w)).collect();
        if terms.iter().any(|t| t.words.is_empty()) {
            return (Vec::new(), Total::Exact(0));
        }
        terms.sort_by_key(|t| t.postings);
        let (driver, checks) = match terms.split_first() {
            Some((first, rest)) => (Some(first), rest),
            None => (None, &[][..]),
        };
        let candidates: Box<dyn Iterator<Item = Doc> + '_> = match (driver, category) {
            (Some(t), _) => self.union(t),
            (None, Some(c)) => Box::new(self.category_docs[c as usize].iter().copied()),
            // `ids.len()` <= u32::MAX (checked in `add`).
            (None, None) => Box::new(0..self.ids.len() as Doc),
        };
        // Each further word is checked by walking its postings beside the
        // driver's (sequential memory, cheap) unless they are much longer
        // than the driver's, then by a look at the document's words.
        let driver_postings = driver.map_or(usize::MAX, |t| t.postings);
        let mut checks: Vec<Check<'_>> = checks
            .iter()
            .map(|t| {
                if t.postings <= driver_postings.saturating_mul(WALK_FACTOR) {
                    Check::Walk(self.union(t).peekable())
                } else {
                    Check::Lookup(t)
                }
            })
            .collect();
        let offset = usize::try_from(search.offset).unwrap_or(0);
        let limit = usize::try_from(search.limit).unwrap_or(0);
        let mut page = Vec::with_capacity(limit);
        let mut matched: u64 = 0;
        for doc in candidates {
            let d = doc as usize;
            if category.is_some_and(|c| self.categories[d] != c)
                || search.min_price_cents.is_some_and(|lo| self.prices[d] < lo)
                || search.max_price_cents.is_some_and(|hi| self.prices[d] > hi)
                || !checks.iter_mut().all(|check| match check {
                    Check::Walk(docs) => {
                        while docs.next_if(|&next| next < doc).is_some() {}
                        docs.peek() == Some(&doc)
                    }
                    Check::Lookup(t) => self.doc_has(doc, t),
                })
            {
                continue;
            }
            let position = usize::try_from(matched).unwrap_or(usize::MAX);
            if position >= offset && page.len() < limit {
                page.push(self.ids[d]);
            }
            matched += 1;
            if matched > TOTAL_BOUND {
                break;
            }
        }
        (page, Total::of(matched))
    }
}

/// How a further query word is checked against a candidate document.
enum Check<'a> {
    /// Its documents, walked in step with the candidates.
    Walk(std::iter::Peekable<Box<dyn Iterator<Item = Doc> + 'a>>),
    /// A look at the candidate's words.
    Lookup(&'a Term),
}

/// A word's postings are walked beside the driver's when at most this many
/// times longer; beyond, looking at each candidate's words is cheaper.
const WALK_FACTOR: usize = 16;

/// Ascending union of ascending lists (a k-way merge; duplicates once).
struct Merged<'a> {
    heap: BinaryHeap<Reverse<(Doc, usize)>>,
    lists: Vec<&'a [Doc]>,
    positions: Vec<usize>,
    last: Option<Doc>,
}

impl<'a> Merged<'a> {
    fn new(lists: impl Iterator<Item = &'a [Doc]>) -> Self {
        let lists: Vec<&[Doc]> = lists.filter(|l| !l.is_empty()).collect();
        let heap = lists
            .iter()
            .enumerate()
            .map(|(i, l)| Reverse((l[0], i)))
            .collect();
        let positions = vec![0; lists.len()];
        Self {
            heap,
            lists,
            positions,
            last: None,
        }
    }
}

impl Iterator for Merged<'_> {
    type Item = Doc;

    fn next(&mut self) -> Option<Doc> {
        while let Some(Reverse((doc, i))) = self.heap.pop() {
            self.positions[i] += 1;
            if let Some(&next) = self.lists[i].get(self.positions[i]) {
                self.heap.push(Reverse((next, i)));
            }
            if self.last != Some(doc) {
                self.last = Some(doc);
                return Some(doc);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use otus_proto::catalog::v1::SearchProductsRequest;

    use super::*;
    use crate::{
        search::fold,
        seed::{Generator, Shape},
    };

    struct Product {
        id: i64,
        name: String,
        category: String,
        price: i64,
    }

    fn catalog(n: usize, shape: Shape) -> (SearchIndex, Vec<Product>) {
        let mut generator = Generator::new(3, shape);
        let mut index = SearchIndex::new();
        let mut products = Vec::new();
        for i in 0..n {
            let p = generator.product();
            // Gaps in the ids, as after deletions.
            let id = i64::try_from(i).expect("small") * 3 + 1;
            index
                .add(id, &fold(&p.name), &p.category, p.price_cents)
                .expect("ascending");
            products.push(Product {
                id,
                name: fold(&p.name),
                category: p.category,
                price: p.price_cents,
            });
        }
        (index, products)
    }

    /// The definition, by brute force.
    fn reference(products: &[Product], s: &Search) -> (Vec<i64>, Total) {
        let matching: Vec<i64> = products
            .iter()
            .filter(|p| s.words.iter().all(|w| p.name.contains(w.as_str())))
            .filter(|p| s.category.as_ref().is_none_or(|c| &p.category == c))
            .filter(|p| s.min_price_cents.is_none_or(|lo| p.price >= lo))
            .filter(|p| s.max_price_cents.is_none_or(|hi| p.price <= hi))
            .map(|p| p.id)
            .collect();
        let page = matching
            .iter()
            .skip(usize::try_from(s.offset).expect("offset"))
            .take(usize::try_from(s.limit).expect("limit"))
            .copied()
            .collect();
        (page, Total::of(matching.len() as u64))
    }

    fn search(q: &str, f: impl FnOnce(&mut SearchProductsRequest)) -> Search {
        let mut req = SearchProductsRequest {
            query: q.into(),
            ..Default::default()
        };
        f(&mut req);
        Search::new(&req).expect("valid search")
    }

    #[test]
    fn answers_equal_the_definition_on_both_shapes() {
        for shape in [Shape::Catalog, Shape::Words] {
            let (index, products) = catalog(30_000, shape);
            let cases = [
                search("космос", |_| {}),
                search("синий", |r| r.limit = Some(100)),
                search("синий рюкзак", |r| r.offset = 5),
                search("син", |_| {}),
                search("лес", |r| r.limit = Some(7)),
                search("ракета кот", |_| {}),
                search("про-1 а", |_| {}),
                search("нетакогослова", |_| {}),
                search("", |r| r.category = "Книги".into()),
                search("", |r| {
                    r.min_price_cents = Some(100_000);
                    r.max_price_cents = Some(101_000);
                }),
                search("", |r| r.offset = 9_900),
                search("стол", |r| {
                    r.category = "Дом и сад".into();
                    r.max_price_cents = Some(200_000);
                }),
                search("стол", |r| r.category = "нет такой".into()),
            ];
            let mut nonempty = 0;
            for s in &cases {
                let answer = index.search(s);
                assert_eq!(answer, reference(&products, s), "{shape:?} {s:?}");
                nonempty += usize::from(!answer.0.is_empty());
            }
            assert!(
                nonempty >= 8,
                "{shape:?}: only {nonempty} cases found anything"
            );
        }
    }

    #[test]
    fn counting_stops_past_the_bound() {
        let (index, _) = catalog(25_000, Shape::Catalog);
        let (page, total) = index.search(&search("", |r| r.limit = Some(3)));
        assert_eq!(total, Total::AtLeast(TOTAL_BOUND));
        assert_eq!(page, vec![1, 4, 7]);
    }

    #[test]
    fn ids_must_ascend() {
        let mut index = SearchIndex::new();
        index.add(5, "а", "c", 1).expect("first");
        assert_eq!(
            index.add(5, "б", "c", 1),
            Err(IndexError::OutOfOrder { id: 5, last: 5 })
        );
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn merged_lists_ascend_without_duplicates() {
        let a = [1, 4, 9];
        let b = [2, 4, 10];
        let c: [Doc; 0] = [];
        let merged: Vec<Doc> = Merged::new([&a[..], &b[..], &c[..]].into_iter()).collect();
        assert_eq!(merged, vec![1, 2, 4, 9, 10]);
    }
}
