//! The executor of searches with words, on bit sets.
//!
//! Per segment, each way of each token (its word, stem, prefix and typo
//! expansions: [`super::Way`]) has its postings read once into a bit set of
//! the segment's documents; a token's union is the OR of its ways, the
//! matches the AND of the tokens' unions. The matches are then filtered
//! (deleted, price; the category as an AND with its set of documents),
//! counted (a popcount), faceted (many matches: a popcount of the AND with
//! each category's set; few: each match's category) and offered to a bounded
//! heap of the best `offset + limit`, each scored (per token, the first of its
//! ways, best first, whose set holds the document); by relevance the page's
//! loop stops once no later match of the segment can enter. The work is the postings
//! of at most `tokens x (2 + 2 x MAX_EXPANSIONS)` words plus a few bit-set
//! passes of `max_doc / 64` words each: no seeking, no per-document merge of
//! posting lists. Memory: at most four bit sets of `max_doc` bits per token
//! (at 1M products and 16 tokens, 8 MiB for the search's duration) and one
//! `u32` per match that passes the filters.

use std::{
    borrow::Cow,
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    sync::{Arc, Mutex, OnceLock, PoisonError},
};

use tantivy::{DocAddress, DocId, Searcher, SegmentReader, Term, schema::IndexRecordOption};

use super::{IndexError, Way, bits::Bits, columns::Columns, top_categories};
use crate::search::{Search, Sort};

/// What a search with words found.
pub(super) struct Found {
    /// The page's documents, best first.
    pub page: Vec<DocAddress>,
    /// Every match (not only the page).
    pub count: u64,
    /// Matches per category, most first, at most `MAX_FACETS`.
    pub categories: Vec<(String, u64)>,
}

/// How one token matched a segment's documents.
struct TokenWays {
    /// The ways but the last, best first, each with its documents.
    better: Vec<(u32, Bits)>,
    /// The last way's score: that of a matched document in none of `better`.
    last: u32,
}

impl TokenWays {
    /// The best way's score for a document the token matches.
    fn score(&self, doc: DocId) -> u32 {
        self.better
            .iter()
            .find(|(_, bits)| bits.contains(doc))
            .map_or(self.last, |(score, _)| *score)
    }

    /// The best score the token gives a document.
    fn top_score(&self) -> u32 {
        self.better.first().map_or(self.last, |(score, _)| *score)
    }
}

/// Reads every posting of `terms` (all of one field) in `segment` into `bits`.
fn read(segment: &SegmentReader, terms: &[Term], bits: &mut Bits) -> Result<(), IndexError> {
    let Some(field) = terms.first().map(Term::field) else {
        return Ok(());
    };
    let inverted = segment.inverted_index(field)?;
    for term in terms {
        let Some(info) = inverted.get_term_info(term)? else {
            continue;
        };
        let mut postings =
            inverted.read_block_postings_from_terminfo(&info, IndexRecordOption::Basic)?;
        loop {
            let docs = postings.docs();
            if docs.is_empty() {
                break;
            }
            for &doc in docs {
                bits.insert(doc);
            }
            postings.advance();
        }
    }
    Ok(())
}

/// A token's documents in one segment: all of them, and by way.
pub(super) struct TokenDocs {
    union: Bits,
    ways: TokenWays,
    /// How many documents `union` holds, in all and per category of the
    /// segment: counted on first need, then read by every search of the
    /// token alone (a one-word search of a segment without deletions
    /// counts nothing again).
    counted: OnceLock<(u64, Vec<u64>)>,
}

impl TokenDocs {
    /// The bytes its bit sets hold.
    fn bytes(&self) -> usize {
        let sets = 1 + self.ways.better.len();
        sets * self.union.words() * std::mem::size_of::<u64>()
    }
}

/// A token's ways (kept alive: their address is the key) and its sets.
type Remembered = (Arc<[Way]>, Arc<TokenDocs>);

/// Most bytes of token sets one view keeps ([`TokenSets`]): 32 MiB, at 1M
/// products about 64 tokens read in every way (125 KiB per set), more for
/// the usual token whose ways hold few documents.
pub const TOKEN_SETS_BYTES: usize = 32 << 20;

/// The token sets a view has read, by (the token's ways, segment): a
/// frequent word's postings are read into bit sets once per view, not once
/// per search (the reads were a quarter of an uncached search's time,
/// docs/performance.md). Within [`TOKEN_SETS_BYTES`]; past it the view
/// starts over. Every commit makes a new view, so a set never outlives the
/// segment it was read from.
pub(super) struct TokenSets {
    /// Keyed by the address of the token's ways, which the entry keeps
    /// alive (so the address cannot be reused for other ways meanwhile).
    entries: HashMap<(usize, u32), Remembered>,
    bytes: usize,
    budget: usize,
}

impl Default for TokenSets {
    fn default() -> Self {
        Self::with_budget(TOKEN_SETS_BYTES)
    }
}

impl TokenSets {
    /// Sets of at most `budget` bytes.
    pub(super) fn with_budget(budget: usize) -> Self {
        Self {
            entries: HashMap::new(),
            bytes: 0,
            budget,
        }
    }

    /// The bytes of the sets it holds.
    #[cfg(test)]
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// `ways`' documents in `segment` (its ordinal `segment_ord` in the
    /// view), read once and then remembered.
    fn get(
        sets: &Mutex<Self>,
        segment_ord: u32,
        segment: &SegmentReader,
        ways: &Arc<[Way]>,
    ) -> Result<Arc<TokenDocs>, IndexError> {
        let key = (Arc::as_ptr(ways).cast::<Way>() as usize, segment_ord);
        // A poisoned lock only means another search panicked between whole
        // inserts: the map is still sound.
        let lock = || sets.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, docs)) = lock().entries.get(&key) {
            return Ok(Arc::clone(docs));
        }
        let (union, token) = token_docs(segment, ways)?;
        let docs = Arc::new(TokenDocs {
            union,
            ways: token,
            counted: OnceLock::new(),
        });
        let size = docs.bytes();
        let mut sets = lock();
        if sets.bytes.saturating_add(size) > sets.budget {
            sets.entries.clear();
            sets.bytes = 0;
        }
        if size <= sets.budget {
            sets.bytes += size;
            sets.entries
                .insert(key, (Arc::clone(ways), Arc::clone(&docs)));
        }
        Ok(docs)
    }
}

/// A token's documents in one segment (every way), and how each matched.
fn token_docs(segment: &SegmentReader, ways: &[Way]) -> Result<(Bits, TokenWays), IndexError> {
    let max_doc = segment.max_doc();
    let mut union = Bits::new(max_doc);
    let mut better = Vec::new();
    let mut last = 0;
    for (i, way) in ways.iter().enumerate() {
        // Scores are small whole numbers (8, 4, 2, 1): exact as integers.
        let score = way.score as u32;
        if i + 1 == ways.len() {
            read(segment, &way.terms, &mut union)?;
            last = score;
        } else {
            let mut bits = Bits::new(max_doc);
            read(segment, &way.terms, &mut bits)?;
            union.or(&bits);
            better.push((score, bits));
        }
    }
    Ok((union, TokenWays { better, last }))
}

/// What reading one match's category costs (a cache miss: the matches are
/// scattered over the segment), in word-at-a-time operations of a facet
/// count (an AND and a popcount of 64 documents). 128 instead measured no
/// better (docs/performance.md).
const MISS_IN_WORDS: u64 = 16;

/// A candidate for the page: its sort key (greater is better), the product
/// id (lower wins a tie) and where it is.
type Ranked = (i64, Reverse<i64>, u32, DocId);

/// Runs a search with words: `tokens` holds each query token's ways, best
/// first (none empty); `columns` the fast fields of each of `searcher`'s
/// segments.
pub(super) fn run(
    searcher: &Searcher,
    columns: &[Arc<Columns>],
    sets: &Mutex<TokenSets>,
    tokens: &[Arc<[Way]>],
    search: &Search,
) -> Result<Found, IndexError> {
    let offset = usize::try_from(search.offset).unwrap_or(0);
    let limit = usize::try_from(search.limit).unwrap_or(0).max(1);
    let window = offset.saturating_add(limit);
    let mut best: BinaryHeap<Reverse<Ranked>> = BinaryHeap::with_capacity(window + 1);
    let mut count = 0u64;
    let mut facets: HashMap<String, u64> = HashMap::new();
    let (low, high) = (search.min_price_cents, search.max_price_cents);
    let priced = low.is_some() || high.is_some();
    for ((ord, segment), columns) in searcher.segment_readers().iter().enumerate().zip(columns) {
        let Ok(segment_ord) = u32::try_from(ord) else {
            break;
        };
        // The category asked for, as this segment's ordinal: a segment
        // without it holds no match.
        let wanted = match &search.category {
            None => None,
            Some(name) => match columns.category_ord(name) {
                Some(o) => Some(o),
                None => continue,
            },
        };
        let Some((matched, common)) = intersect(segment_ord, segment, sets, tokens)? else {
            continue;
        };
        let mut kept = matched.docs(common);
        // The filters, a word of 64 documents at a time where they can be:
        // what is left is the segment's part of the answer. A token alone
        // that nothing filters is read where it is remembered.
        if let Some(alive) = segment.alive_bitset() {
            kept.to_mut().remove_where(|doc| alive.is_deleted(doc));
        }
        if priced {
            kept.to_mut().remove_where(|doc| {
                let price = columns.price(doc);
                low.is_some_and(|lo| price < lo) || high.is_some_and(|hi| price > hi)
            });
        }
        if let Some(w) = wanted {
            match columns
                .category_sets
                .as_ref()
                .and_then(|s| s.get(w as usize))
            {
                Some(set) => {
                    if !keep_common(&mut kept, set) {
                        continue;
                    }
                }
                None => kept.to_mut().remove_where(|doc| columns.category(doc) != w),
            }
        }
        let per_category = match (&kept, wanted) {
            (kept, Some(w)) => {
                let found = kept.len();
                count += found;
                let mut per_category = vec![0u64; columns.category_names.len()];
                if let Some(n) = per_category.get_mut(w as usize) {
                    *n = found;
                }
                Cow::Owned(per_category)
            }
            // The token alone, unfiltered: its own counts.
            (Cow::Borrowed(set), None) => {
                let (found, per_category) =
                    matched.first.counted.get_or_init(|| counts(set, columns));
                count += found;
                Cow::Borrowed(per_category)
            }
            (Cow::Owned(kept), None) => {
                let (found, per_category) = counts(kept, columns);
                count += found;
                Cow::Owned(per_category)
            }
        };
        // By relevance, no match scores more than every token's best way:
        // once the page's worst has that score and came from this same
        // ascending segment, no later match of the segment can enter.
        let top_score = i64::from(matched.top_score());
        let ascending_here = |worst: &Ranked| worst.2 == segment_ord && columns.ids_ascending;
        for doc in kept.iter() {
            let full = best.len() == window;
            if full
                && search.sort == Sort::Relevance
                && best
                    .peek()
                    .is_some_and(|Reverse(w)| w.0 == top_score && ascending_here(w))
            {
                break;
            }
            let key = match search.sort {
                Sort::Relevance => i64::from(matched.score(doc)),
                Sort::PriceDesc => columns.price(doc),
                Sort::PriceAsc => columns.price(doc).saturating_neg(),
            };
            if let Some(Reverse(worst)) = best.peek().filter(|_| full) {
                // Reading the id is a cache miss per match: decide without
                // it when the key does, or when the page's worst has the
                // same key and came earlier from this same ascending segment
                // (a lower id: it ranks first).
                if key < worst.0 || (key == worst.0 && ascending_here(worst)) {
                    continue;
                }
            }
            let ranked = (key, Reverse(columns.id(doc)), segment_ord, doc);
            if best.len() < window {
                best.push(Reverse(ranked));
            } else if best.peek().is_some_and(|Reverse(w)| ranked > *w) {
                best.pop();
                best.push(Reverse(ranked));
            }
        }
        for (name, &n) in columns.category_names.iter().zip(per_category.iter()) {
            if n > 0 {
                *facets.entry(name.clone()).or_default() += n;
            }
        }
    }
    let mut ranked: Vec<Ranked> = best.into_iter().map(|Reverse(r)| r).collect();
    ranked.sort_unstable_by(|a, b| b.cmp(a));
    Ok(Found {
        page: ranked
            .into_iter()
            .skip(offset)
            .map(|(_, _, segment, doc)| DocAddress::new(segment, doc))
            .collect(),
        count,
        categories: top_categories(facets),
    })
}

/// Each token's sets in one segment ([`intersect`]), in the order of the
/// tokens.
struct Matched {
    /// The first token's: its union is the matches when it is the only
    /// token.
    first: Arc<TokenDocs>,
    rest: Vec<Arc<TokenDocs>>,
}

impl Matched {
    /// The matches: `common`, the intersection [`intersect`] wrote when
    /// there are several tokens, or else the first token's remembered set.
    fn docs(&self, common: Option<Bits>) -> Cow<'_, Bits> {
        match common {
            Some(c) => Cow::Owned(c),
            None => Cow::Borrowed(&self.first.union),
        }
    }

    fn tokens(&self) -> impl Iterator<Item = &TokenDocs> {
        std::iter::once(&*self.first).chain(self.rest.iter().map(|t| &**t))
    }

    /// A match's score: per token, that of its best way holding the document.
    fn score(&self, doc: DocId) -> u32 {
        self.tokens().map(|t| t.ways.score(doc)).sum()
    }

    /// The score of a match every token found its best way.
    fn top_score(&self) -> u32 {
        self.tokens().map(|t| t.ways.top_score()).sum()
    }
}

/// How many documents `kept` holds, in all and per category of the
/// segment. A word-at-a-time count costs a pass over the whole segment per
/// category; reading each match's category costs a cache miss per match:
/// the cheaper of the two.
fn counts(kept: &Bits, columns: &Columns) -> (u64, Vec<u64>) {
    let found = kept.len();
    let mut per_category = vec![0u64; columns.category_names.len()];
    let sets = columns.category_sets.as_ref().filter(|sets| {
        found.saturating_mul(MISS_IN_WORDS)
            > (kept.words() as u64).saturating_mul(sets.len() as u64)
    });
    match sets {
        Some(sets) => {
            for (n, set) in per_category.iter_mut().zip(sets) {
                *n = kept.count_common(set);
            }
        }
        // Few matches, or too many categories for a set each: a match's
        // category is a cache miss (the matches are scattered over the
        // segment), in a loop that does nothing but read and count, so the
        // processor overlaps the misses.
        None => {
            for doc in kept.iter() {
                if let Some(n) = per_category.get_mut(columns.category(doc) as usize) {
                    *n += 1;
                }
            }
        }
    }
    (found, per_category)
}

/// Keeps in `docs` only what `other` holds too: one pass that writes a new
/// set when `docs` is borrowed (no copy first). Whether anything is left.
fn keep_common(docs: &mut Cow<'_, Bits>, other: &Bits) -> bool {
    match docs {
        Cow::Borrowed(b) => match b.common(other) {
            Some(both) => {
                *docs = Cow::Owned(both);
                true
            }
            None => false,
        },
        Cow::Owned(b) => b.and(other),
    }
}

/// The sets of `tokens` in `segment` (read once per view: [`TokenSets`]),
/// and their intersection when there are several (never empty); None when
/// there are no tokens or no document matches every token (the tokens after
/// the one that empties the intersection are not read).
fn intersect(
    segment_ord: u32,
    segment: &SegmentReader,
    sets: &Mutex<TokenSets>,
    tokens: &[Arc<[Way]>],
) -> Result<Option<(Matched, Option<Bits>)>, IndexError> {
    let Some((head, tail)) = tokens.split_first() else {
        return Ok(None);
    };
    // The first token: its set as it is remembered.
    let first = TokenSets::get(sets, segment_ord, segment, head)?;
    let mut rest = Vec::with_capacity(tail.len());
    let mut common: Option<Bits> = None;
    for ways in tail {
        let token = TokenSets::get(sets, segment_ord, segment, ways)?;
        let left = match &mut common {
            // The second token: one pass writes the intersection (the
            // remembered sets stay as they are).
            None => {
                common = first.union.common(&token.union);
                common.is_some()
            }
            Some(c) => c.and(&token.union),
        };
        if !left {
            return Ok(None);
        }
        rest.push(token);
    }
    Ok(Some((Matched { first, rest }, common)))
}

/// Every live match of `tokens` in the view, as (product id, score), by id:
/// what the tests hold against tantivy's scores.
#[cfg(test)]
pub(super) fn scores(
    searcher: &Searcher,
    columns: &[Arc<Columns>],
    tokens: &[Arc<[Way]>],
) -> Result<Vec<(i64, u32)>, IndexError> {
    let mut out = Vec::new();
    // Sets of their own: what the search's cache holds plays no part here.
    let sets = Mutex::default();
    for ((ord, segment), columns) in searcher.segment_readers().iter().enumerate().zip(columns) {
        let ord = u32::try_from(ord).expect("fewer than 2^32 segments");
        let Some((matched, common)) = intersect(ord, segment, &sets, tokens)? else {
            continue;
        };
        let docs = matched.docs(common);
        let alive = segment.alive_bitset();
        for doc in docs.iter() {
            if !alive.is_some_and(|a| a.is_deleted(doc)) {
                out.push((columns.id(doc), matched.score(doc)));
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}
