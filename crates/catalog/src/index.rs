//! The product search index: a [tantivy] index in memory, one per catalog
//! replica (see `docs/search.md`).
//!
//! **What a query word matches.** Names and query words are folded the same
//! way (Unicode lower case, `ё` as `е`) and cut into tokens at every
//! character that is not a letter or a digit (`Про-505` is `про`, `505`).
//! Each name is indexed twice: its tokens as they are (`exact`) and through
//! the Russian Snowball stemmer (`stem`). A query token matches a name that
//! holds, in falling order of relevance:
//!
//! 1. the token itself (`рюкзак`),
//! 2. another form of it, by stem (`рюкзаки`, `синие` for `синяя`),
//! 3. for the query's last token only, a word it begins (`рюкз`, `про-50`),
//! 4. a word one edit away from its stem, for tokens of 5+ characters, two
//!    edits from 9+ characters (Meilisearch's defaults), digits excepted
//!    (model codes are exact).
//!
//! A name matches a search when it matches every query token (AND), the
//! category and the price range. Its score is the sum over the tokens of
//! the best way each matched ([`EXACT`] > [`STEM`] > [`PREFIX`] > [`FUZZY`]),
//! so a word inside another word (`чай` in `чайник`, through the prefix)
//! ranks after the word itself; ties go to the lower product id.
//!
//! **Bounds.** A prefix or a typo expands to at most [`MAX_EXPANSIONS`]
//! vocabulary words (the most frequent of the first [`MAX_SCANNED_TERMS`]
//! it reaches in each segment), so a one-letter prefix cannot expand to the
//! whole vocabulary. A search's cost is then the postings of at most
//! `tokens x (2 + 2 x MAX_EXPANSIONS)` words, plus the category's or the price
//! column's documents when a search names no words.

use std::{
    cmp::Reverse,
    collections::HashMap,
    ops::Bound,
    sync::{Arc, Mutex, PoisonError},
};

use tantivy::termdict::TermDictionary;
use tantivy::{
    DocAddress, DocId, Index, IndexReader, IndexWriter, ReloadPolicy, Score, Searcher,
    SegmentOrdinal, SegmentReader, TantivyDocument, Term,
    collector::{Collector, Count, SegmentCollector, TopDocs},
    query::{
        AllQuery, BooleanQuery, ConstScoreQuery, DfaWrapper, DisjunctionMaxQuery, FuzzyTermQuery,
        Occur, Query, RangeQuery, TermQuery, TermSetQuery,
    },
    schema::{
        FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing,
        TextOptions, Value as _,
    },
    tokenizer::{Language, RemoveLongFilter, SimpleTokenizer, Stemmer, TextAnalyzer},
};

use otus_proto::catalog::v1::Product;

use crate::search::{Search, Sort, Total};

mod bits;
mod columns;
mod words;

/// Score of a query token found as typed.
pub const EXACT: Score = 8.0;
/// Score of a token found in another form (same stem).
pub const STEM: Score = 4.0;
/// Score of the last token found as the beginning of a word.
pub const PREFIX: Score = 2.0;
/// Score of a token found with typos.
pub const FUZZY: Score = 1.0;
/// Most vocabulary words one prefix or one misspelt token expands to.
pub const MAX_EXPANSIONS: usize = 128;
/// Most vocabulary words read per segment while expanding a prefix or a
/// misspelling (the expansions are the most frequent of these).
pub const MAX_SCANNED_TERMS: usize = 2_000;
/// Tokens longer than this (bytes) are not indexed: no name word is that long.
const MAX_TOKEN_BYTES: usize = 64;
/// Shortest token (characters) allowed one typo; two from [`TWO_TYPOS_CHARS`].
pub const ONE_TYPO_CHARS: usize = 5;
/// Shortest token (characters) allowed two typos.
pub const TWO_TYPOS_CHARS: usize = 9;
/// Memory for the indexing buffer: the smallest tantivy takes per thread is
/// 15 MB; a build flushes a segment whenever the buffer is full.
const WRITER_MEMORY: usize = 64 << 20;
/// Most tokens whose ways a view remembers ([`Snapshot::ways`]): each is
/// at most `2 + 2 x MAX_EXPANSIONS` terms (a few KiB).
pub const MAX_REMEMBERED_TOKENS: usize = 1_024;
/// Most categories listed in an answer's facet counts.
pub const MAX_FACETS: usize = 100;

/// The doc store's block (not compressed): a page's read copies the whole
/// block of each of its products. tantivy's default, 16 KiB, measured 8-12%
/// fewer closed-loop searches a second than 4 KiB at the same resident
/// memory at 1M products; 2 KiB cost +58 MiB (docs/performance.md).
const DOC_STORE_BLOCK: usize = 4 << 10;
const EXACT_TOKENIZER: &str = "otus_exact";
const STEM_TOKENIZER: &str = "otus_stem";

/// How names and query words are folded before tokenizing: lower case, and
/// `ё` as `е` (Russian text writes either).
pub fn fold(s: &str) -> String {
    s.to_lowercase().replace('ё', "е")
}

/// The Russian stem of one folded token, as the index computes it (tests
/// build their reference with it).
pub fn stem(token: &str) -> String {
    tokens(&mut stem_analyzer(), token)
        .into_iter()
        .next()
        .unwrap_or_else(|| token.to_owned())
}

// No lower-casing filter: names and queries are folded (`fold`) before
// they reach an analyzer, and tantivy's `LowerCaser` re-lowers every
// non-ASCII token (a tenth of a build's time).
fn exact_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
        .build()
}

fn stem_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
        .filter(Stemmer::new(Language::Russian))
        .build()
}

fn tokens(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    analyzer
        .token_stream(text)
        .process(&mut |t| out.push(t.text.clone()));
    out
}

/// The index's fields.
#[derive(Clone, Copy, Debug)]
struct Fields {
    id: Field,
    exact: Field,
    stem: Field,
    category: Field,
    price: Field,
    /// The name as written (`exact` and `stem` index its folded form).
    name: Field,
    description: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = |tokenizer: &str| {
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(tokenizer)
                .set_index_option(IndexRecordOption::Basic)
                .set_fieldnorms(false),
        )
    };
    // Everything a search page shows is stored, so a page is read from the
    // same view that ranked it, without a database round trip.
    let fields = Fields {
        id: b.add_i64_field("id", INDEXED | FAST | STORED),
        exact: b.add_text_field("exact", text(EXACT_TOKENIZER)),
        stem: b.add_text_field("stem", text(STEM_TOKENIZER)),
        category: b.add_text_field("category", STRING | FAST | STORED),
        price: b.add_i64_field("price", INDEXED | FAST | STORED),
        name: b.add_text_field("name", STORED),
        description: b.add_text_field("description", STORED),
    };
    (b.build(), fields)
}

/// Why the index failed (a fault of the index, not of a request).
#[derive(Debug, thiserror::Error)]
#[error("search index: {0}")]
pub struct IndexError(#[from] tantivy::TantivyError);

impl From<std::io::Error> for IndexError {
    fn from(e: std::io::Error) -> Self {
        Self(e.into())
    }
}

/// One search's answer from the index.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// The page's products, best first, as the index holds them.
    pub page: Vec<Product>,
    pub total: Total,
    /// Matches per category (exact counts over all matches), most first,
    /// at most [`MAX_FACETS`].
    pub categories: Vec<(String, u64)>,
}

/// The writable index, owned by the task that keeps it in step with the
/// database. [`SearchIndex::commit`] makes what was added searchable.
pub struct SearchIndex {
    index: Index,
    writer: IndexWriter,
    reader: IndexReader,
    fields: Fields,
    columns: columns::ColumnCache,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex").finish_non_exhaustive()
    }
}

impl SearchIndex {
    /// An empty index in memory, indexing on one thread.
    pub fn new() -> Result<Self, IndexError> {
        let (schema, fields) = schema();
        let index = Index::builder()
            .schema(schema)
            .settings(tantivy::IndexSettings {
                docstore_blocksize: DOC_STORE_BLOCK,
                ..Default::default()
            })
            .create_in_ram()?;
        index
            .tokenizers()
            .register(EXACT_TOKENIZER, exact_analyzer());
        index.tokenizers().register(STEM_TOKENIZER, stem_analyzer());
        let writer = index.writer_with_num_threads(1, WRITER_MEMORY)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Self {
            index,
            writer,
            reader,
            fields,
            columns: columns::ColumnCache::default(),
        })
    }

    /// Adds a product, replacing any earlier version of it.
    pub fn upsert(&mut self, product: &Product) -> Result<(), IndexError> {
        self.remove(product.id);
        self.add(product)
    }

    /// Adds a product known not to be in the index (a full build).
    pub fn add(&mut self, product: &Product) -> Result<(), IndexError> {
        let f = self.fields;
        let folded = fold(&product.name);
        let mut doc = TantivyDocument::new();
        doc.add_i64(f.id, product.id);
        doc.add_text(f.exact, &folded);
        doc.add_text(f.stem, &folded);
        doc.add_text(f.category, &product.category);
        doc.add_i64(f.price, product.price_cents);
        doc.add_text(f.name, &product.name);
        doc.add_text(f.description, &product.description);
        self.writer.add_document(doc)?;
        Ok(())
    }

    /// Removes a product (nothing if absent).
    pub fn remove(&mut self, id: i64) {
        self.writer
            .delete_term(Term::from_field_i64(self.fields.id, id));
    }

    /// Makes every change so far searchable and returns the view with them.
    pub fn commit(&mut self) -> Result<Snapshot, IndexError> {
        self.writer.commit()?;
        self.reader.reload()?;
        self.snapshot()
    }

    /// Makes every change so far searchable, merges every segment into one
    /// (after a full build: fewer, larger segments search faster) and
    /// returns the view. No view is made of the segments before the merge:
    /// it would read their fast fields into arrays only to drop them.
    pub fn merge_all(&mut self) -> Result<Snapshot, IndexError> {
        self.writer.commit()?;
        let segments = self.index.searchable_segment_ids()?;
        if segments.len() > 1 {
            self.writer.merge(&segments).wait()?;
        }
        self.reader.reload()?;
        self.snapshot()
    }

    /// The view of the last commit.
    pub fn snapshot(&mut self) -> Result<Snapshot, IndexError> {
        let searcher = self.reader.searcher();
        let columns = self.columns.for_view(&searcher)?;
        Ok(Snapshot {
            searcher,
            columns,
            ways: Arc::default(),
            token_sets: Arc::default(),
            fields: self.fields,
        })
    }
}

/// A consistent, read-only view of the index: what one search reads.
#[derive(Clone)]
pub struct Snapshot {
    searcher: Searcher,
    /// The fast fields of each of `searcher`'s segments, as arrays.
    columns: Arc<[Arc<columns::Columns>]>,
    /// The ways of the tokens searched in this view (see [`Self::ways`]).
    ways: Arc<Mutex<RememberedWays>>,
    /// The bit sets of the tokens searched in this view ([`words::TokenSets`]).
    token_sets: Arc<Mutex<words::TokenSets>>,
    fields: Fields,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("products", &self.len())
            .finish()
    }
}

/// The ways of the tokens a view has expanded, by (token, whether it is a
/// prefix).
type RememberedWays = HashMap<(String, bool), Arc<[Way]>>;

/// One way a query token matches: the documents holding any of `terms`
/// (all of one field), each scored `score`.
struct Way {
    score: Score,
    terms: Vec<Term>,
}

impl Way {
    fn new(score: Score, terms: Vec<Term>) -> Self {
        Self { score, terms }
    }
}

/// One query token and how it may match.
struct QueryToken {
    exact: String,
    stem: String,
    prefix: bool,
}

impl Snapshot {
    /// Products in this view.
    pub fn len(&self) -> u64 {
        self.searcher.num_docs()
    }

    /// Whether the view holds no product.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn query_tokens(search: &Search) -> Vec<QueryToken> {
        let (mut exact, mut stem) = (exact_analyzer(), stem_analyzer());
        let mut out: Vec<QueryToken> = Vec::new();
        for word in &search.words {
            let is_last = search.last_word.as_deref() == Some(word.as_str());
            let pieces = tokens(&mut exact, &fold(word));
            let n = pieces.len();
            for (i, piece) in pieces.into_iter().enumerate() {
                let prefix = is_last && i + 1 == n;
                if let Some(t) = out.iter_mut().find(|t| t.exact == piece) {
                    t.prefix |= prefix;
                    continue;
                }
                let stem = tokens(&mut stem, &piece)
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| piece.clone());
                out.push(QueryToken {
                    exact: piece,
                    stem,
                    prefix,
                });
            }
        }
        out
    }

    /// The vocabulary words of `field` that `automaton` accepts: at most
    /// [`MAX_EXPANSIONS`], the most frequent of the first
    /// [`MAX_SCANNED_TERMS`] per segment.
    fn expand(&self, field: Field, automaton: &DfaWrapper) -> Result<Vec<Term>, IndexError> {
        let mut found: HashMap<String, u64> = HashMap::new();
        for segment in self.searcher.segment_readers() {
            let inverted = segment.inverted_index(field)?;
            let dict: &TermDictionary = inverted.terms();
            let mut stream = dict
                .search(automaton)
                .into_stream()
                .map_err(tantivy::TantivyError::from)?;
            let mut scanned = 0;
            while scanned < MAX_SCANNED_TERMS && stream.advance() {
                scanned += 1;
                // Keys of a text field are the UTF-8 of its tokens.
                if let Ok(word) = std::str::from_utf8(stream.key()) {
                    *found.entry(word.to_owned()).or_default() +=
                        u64::from(stream.value().doc_freq);
                }
            }
        }
        let mut words: Vec<(String, u64)> = found.into_iter().collect();
        words.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        words.truncate(MAX_EXPANSIONS);
        Ok(words
            .into_iter()
            .map(|(word, _)| Term::from_field_text(field, &word))
            .collect())
    }

    /// The ways `t` matches, best first: for each, its score and the words
    /// whose documents match that way. This is the definition both
    /// executors ([`Self::token_query`], [`words::run`]) follow.
    fn token_ways(&self, t: &QueryToken) -> Result<Vec<Way>, IndexError> {
        let f = self.fields;
        let term = |field, text: &str| Term::from_field_text(field, text);
        // A name holding the token holds its stem too, so the exact way's
        // documents are a subset of the stem way's; equal counts mean equal
        // sets (deleted documents included), and one list serves both.
        let exact_docs = self.searcher.doc_freq(&term(f.exact, &t.exact))?;
        let stem_docs = self.searcher.doc_freq(&term(f.stem, &t.stem))?;
        let mut ways = if exact_docs == stem_docs {
            vec![Way::new(EXACT, vec![term(f.stem, &t.stem)])]
        } else {
            vec![
                Way::new(EXACT, vec![term(f.exact, &t.exact)]),
                Way::new(STEM, vec![term(f.stem, &t.stem)]),
            ]
        };
        if t.prefix {
            let fuzzy = FuzzyTermQuery::new_prefix(term(f.exact, &t.exact), 0, true);
            let automaton = fuzzy.automaton()?;
            let mut terms = self.expand(f.exact, &automaton)?;
            // The token itself is the exact way already (a better score):
            // walking its postings twice would only cost.
            let exact = term(f.exact, &t.exact);
            terms.retain(|w| *w != exact);
            ways.push(Way::new(PREFIX, terms));
        }
        let chars = t.exact.chars().count();
        if chars >= ONE_TYPO_CHARS && !t.exact.chars().any(|c| c.is_ascii_digit()) {
            let distance = if chars >= TWO_TYPOS_CHARS { 2 } else { 1 };
            let fuzzy = FuzzyTermQuery::new(term(f.stem, &t.stem), distance, true);
            let automaton = fuzzy.automaton()?;
            let mut terms = self.expand(f.stem, &automaton)?;
            // Distance 0 is the stem way already.
            let stem = term(f.stem, &t.stem);
            terms.retain(|w| *w != stem);
            ways.push(Way::new(FUZZY, terms));
        }
        ways.retain(|w| !w.terms.is_empty());
        Ok(ways)
    }

    /// [`Self::token_ways`], remembered for this view: a token's ways
    /// depend only on the token and the view's vocabulary, so a view answers
    /// a token it has expanded before without building a Levenshtein
    /// automaton and walking the term dictionaries again (a fifth of a
    /// search's time, docs/performance.md). At most [`MAX_REMEMBERED_TOKENS`]
    /// per view (then it starts over); every commit makes a new view.
    fn ways(&self, t: &QueryToken) -> Result<Arc<[Way]>, IndexError> {
        let key = (t.exact.clone(), t.prefix);
        // A poisoned lock only means another search panicked mid-insert of
        // a complete value: the map is still sound.
        if let Some(ways) = self
            .ways
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Ok(Arc::clone(ways));
        }
        let ways: Arc<[Way]> = self.token_ways(t)?.into();
        let mut remembered = self.ways.lock().unwrap_or_else(PoisonError::into_inner);
        if remembered.len() >= MAX_REMEMBERED_TOKENS {
            remembered.clear();
        }
        remembered.insert(key, Arc::clone(&ways));
        Ok(ways)
    }

    /// One token as a tantivy query: the best of its ways.
    fn token_query(&self, t: &QueryToken) -> Result<Box<dyn Query>, IndexError> {
        let mut ways: Vec<Box<dyn Query>> = self
            .token_ways(t)?
            .into_iter()
            .map(|way| -> Box<dyn Query> {
                let inner: Box<dyn Query> = match <[Term; 1]>::try_from(way.terms) {
                    Ok([term]) => Box::new(TermQuery::new(term, IndexRecordOption::Basic)),
                    // A term set reads every term's postings once into a bit
                    // set; a union of term queries merges them document by
                    // document (docs/performance.md).
                    Err(terms) => Box::new(TermSetQuery::new(terms)),
                };
                Box::new(ConstScoreQuery::new(inner, way.score))
            })
            .collect();
        Ok(match ways.len() {
            1 => ways.remove(0),
            _ => Box::new(DisjunctionMaxQuery::new(ways)),
        })
    }

    fn query(&self, search: &Search) -> Result<Option<Box<dyn Query>>, IndexError> {
        let f = self.fields;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        if !search.words.is_empty() {
            let tokens = Self::query_tokens(search);
            if tokens.is_empty() {
                // Words with no letter or digit: nothing can match them.
                return Ok(None);
            }
            for t in &tokens {
                clauses.push((Occur::Must, self.token_query(t)?));
            }
        }
        if let Some(category) = &search.category {
            clauses.push((
                Occur::Must,
                Box::new(ConstScoreQuery::new(
                    Box::new(TermQuery::new(
                        Term::from_field_text(f.category, category),
                        IndexRecordOption::Basic,
                    )),
                    0.0,
                )),
            ));
        }
        if search.min_price_cents.is_some() || search.max_price_cents.is_some() {
            let bound = |p: Option<i64>| {
                p.map_or(Bound::Unbounded, |p| {
                    Bound::Included(Term::from_field_i64(f.price, p))
                })
            };
            clauses.push((
                Occur::Must,
                Box::new(ConstScoreQuery::new(
                    Box::new(RangeQuery::new(
                        bound(search.min_price_cents),
                        bound(search.max_price_cents),
                    )),
                    0.0,
                )),
            ));
        }
        Ok(Some(if clauses.is_empty() {
            Box::new(AllQuery)
        } else {
            Box::new(BooleanQuery::new(clauses))
        }))
    }

    /// Answers a search: the page (best first), the bounded total and the
    /// category counts.
    ///
    /// A search with words runs on bit sets ([`words::run`]): each token's
    /// ways are read once per segment into bit sets, which are intersected,
    /// and every match is scored, counted and faceted in one pass. tantivy's
    /// own query for it (a conjunction of per-token unions) spent most of a
    /// search's time seeking and refilling the unions (docs/performance.md);
    /// it still answers searches without words (filters only), and the tests
    /// hold the two executors to the same answers.
    pub fn search(&self, search: &Search) -> Result<Answer, IndexError> {
        if search.words.is_empty() {
            return self.search_query(search);
        }
        let tokens = Self::query_tokens(search);
        if tokens.is_empty() {
            // Words with no letter or digit: nothing can match them.
            return Ok(Answer::none());
        }
        let ways = tokens
            .iter()
            .map(|t| self.ways(t))
            .collect::<Result<Vec<_>, _>>()?;
        let found = words::run(
            &self.searcher,
            &self.columns,
            &self.token_sets,
            &ways,
            search,
        )?;
        let page = found
            .page
            .into_iter()
            .map(|address| self.product(address))
            .collect::<Result<_, _>>()?;
        Ok(Answer {
            page,
            total: Total::of(found.count),
            categories: found.categories,
        })
    }

    /// Answers a search with tantivy's query and collectors.
    fn search_query(&self, search: &Search) -> Result<Answer, IndexError> {
        let Some(query) = self.query(search)? else {
            return Ok(Answer::none());
        };
        let offset = usize::try_from(search.offset).unwrap_or(0);
        let limit = usize::try_from(search.limit).unwrap_or(0).max(1);
        let top = TopDocs::with_limit(limit).and_offset(offset);
        let facets = CategoryCounts;
        // Every order ends with the product id, ascending: a stable order
        // however the index is segmented.
        let (docs, count, categories) = match search.sort {
            Sort::Relevance => {
                let top = top.tweak_score(|segment: &SegmentReader| {
                    let ids = id_column(segment);
                    move |doc: DocId, score: Score| (score, Reverse(ids.first(doc).unwrap_or(0)))
                });
                let (docs, count, cats) = self.searcher.search(&*query, &(top, Count, facets))?;
                (
                    docs.into_iter()
                        .map(|(_, address)| address)
                        .collect::<Vec<_>>(),
                    count,
                    cats,
                )
            }
            Sort::PriceAsc | Sort::PriceDesc => {
                let desc = search.sort == Sort::PriceDesc;
                let top = top.tweak_score(move |segment: &SegmentReader| {
                    let ids = id_column(segment);
                    let prices = price_column(segment);
                    move |doc: DocId, _score: Score| {
                        let price = prices.first(doc).unwrap_or(0);
                        let key = if desc { price } else { price.saturating_neg() };
                        (key, Reverse(ids.first(doc).unwrap_or(0)))
                    }
                });
                let (docs, count, cats) = self.searcher.search(&*query, &(top, Count, facets))?;
                (
                    docs.into_iter()
                        .map(|(_, address)| address)
                        .collect::<Vec<_>>(),
                    count,
                    cats,
                )
            }
        };
        let page = docs
            .into_iter()
            .map(|address| self.product(address))
            .collect::<Result<_, _>>()?;
        Ok(Answer {
            page,
            total: Total::of(count as u64),
            categories,
        })
    }

    /// A stored product (a document of this view: it has every field).
    fn product(&self, address: DocAddress) -> Result<Product, IndexError> {
        let doc: TantivyDocument = self.searcher.doc(address)?;
        let f = self.fields;
        let text = |field| {
            doc.get_first(field)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let int = |field| doc.get_first(field).and_then(|v| v.as_i64()).unwrap_or(0);
        Ok(Product {
            id: int(f.id),
            name: text(f.name),
            description: text(f.description),
            category: text(f.category),
            price_cents: int(f.price),
        })
    }
}

impl Answer {
    /// No match.
    fn none() -> Self {
        Self {
            page: Vec::new(),
            total: Total::Exact(0),
            categories: Vec::new(),
        }
    }

    /// The page's product ids, best first.
    pub fn ids(&self) -> Vec<i64> {
        self.page.iter().map(|p| p.id).collect()
    }
}

fn id_column(segment: &SegmentReader) -> tantivy::columnar::Column<i64> {
    // Every document has an id: the column exists in every segment of this
    // schema; an empty one (a segment of no documents) answers None.
    segment
        .fast_fields()
        .i64("id")
        .unwrap_or_else(|_| tantivy::columnar::Column::build_empty_column(0))
}

fn price_column(segment: &SegmentReader) -> tantivy::columnar::Column<i64> {
    segment
        .fast_fields()
        .i64("price")
        .unwrap_or_else(|_| tantivy::columnar::Column::build_empty_column(0))
}

/// An answer's category counts: most first (ties by name), at most
/// [`MAX_FACETS`].
fn top_categories(counts: HashMap<String, u64>) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = counts.into_iter().collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out.truncate(MAX_FACETS);
    out
}

/// Counts matches per category.
struct CategoryCounts;

struct SegmentCategoryCounts {
    column: Option<tantivy::columnar::StrColumn>,
    counts: Vec<u64>,
}

impl Collector for CategoryCounts {
    type Fruit = Vec<(String, u64)>;
    type Child = SegmentCategoryCounts;

    fn for_segment(
        &self,
        _segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentCategoryCounts> {
        let column = reader.fast_fields().str("category")?;
        let terms = column.as_ref().map_or(0, |c| c.num_terms());
        Ok(SegmentCategoryCounts {
            column,
            counts: vec![0; terms],
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Vec<(String, u64)>>) -> tantivy::Result<Self::Fruit> {
        let mut total: HashMap<String, u64> = HashMap::new();
        for (name, n) in fruits.into_iter().flatten() {
            *total.entry(name).or_default() += n;
        }
        Ok(top_categories(total))
    }
}

impl SegmentCollector for SegmentCategoryCounts {
    type Fruit = Vec<(String, u64)>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        if let Some(column) = &self.column {
            for ord in column.term_ords(doc) {
                if let Some(n) = usize::try_from(ord)
                    .ok()
                    .and_then(|o| self.counts.get_mut(o))
                {
                    *n += 1;
                }
            }
        }
    }

    fn harvest(self) -> Vec<(String, u64)> {
        let Some(column) = self.column else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (ord, n) in self.counts.into_iter().enumerate() {
            let mut name = String::new();
            if n > 0 && column.ord_to_str(ord as u64, &mut name).unwrap_or(false) {
                out.push((name, n));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use otus_proto::catalog::v1::{SearchProductsRequest, SearchSort};

    use super::*;
    use crate::seed::{Generator, Shape};

    struct Item {
        id: i64,
        words: Vec<String>,
        category: String,
        price: i64,
    }

    fn stored(id: i64, name: &str, category: &str, price_cents: i64) -> Product {
        Product {
            id,
            name: name.to_owned(),
            description: format!("{name}: описание"),
            category: category.to_owned(),
            price_cents,
        }
    }

    fn words(name: &str) -> Vec<String> {
        tokens(&mut exact_analyzer(), &fold(name))
    }

    fn catalog(n: usize, shape: Shape) -> (Snapshot, Vec<Item>) {
        let mut generator = Generator::new(3, shape);
        let mut index = SearchIndex::new().expect("index");
        let mut products = Vec::new();
        for i in 0..n {
            let p = generator.product();
            // Gaps in the ids, as after deletions.
            let id = i64::try_from(i).expect("small") * 3 + 1;
            index
                .add(&stored(id, &p.name, &p.category, p.price_cents))
                .expect("add");
            products.push(Item {
                id,
                words: words(&p.name),
                category: p.category,
                price: p.price_cents,
            });
        }
        (index.merge_all().expect("merge"), products)
    }

    fn search(q: &str, f: impl FnOnce(&mut SearchProductsRequest)) -> Search {
        let mut req = SearchProductsRequest {
            query: q.into(),
            limit: Some(100),
            ..Default::default()
        };
        f(&mut req);
        Search::new(&req).expect("valid search")
    }

    fn all_ids(snapshot: &Snapshot, q: &str) -> Vec<i64> {
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let page = snapshot
                .search(&search(q, |r| r.offset = offset))
                .expect("search")
                .ids();
            if page.is_empty() {
                break;
            }
            offset += 100;
            out.extend(page);
        }
        out
    }

    fn with_word(products: &[Item], word: &str) -> Vec<i64> {
        products
            .iter()
            .filter(|p| p.words.iter().any(|w| w == word))
            .map(|p| p.id)
            .collect()
    }

    fn sorted(mut v: Vec<i64>) -> Vec<i64> {
        v.sort_unstable();
        v
    }

    #[test]
    fn other_forms_typos_case_and_yo_find_the_word() {
        let (index, products) = catalog(3_000, Shape::Catalog);
        let backpacks = with_word(&products, "рюкзак");
        assert!(backpacks.len() > 10, "the catalog has backpacks");
        for q in ["рюкзак", "рюкзаки", "РЮКЗАКОВ", "рюкзк", "рюкзакк"]
        {
            assert_eq!(sorted(all_ids(&index, q)), backpacks, "{q}");
        }
        let tents = with_word(&products, "палатка");
        assert!(!tents.is_empty());
        for q in ["палатки", "палтка", "Палатку"] {
            assert_eq!(sorted(all_ids(&index, q)), tents, "{q}");
        }
        let light = products
            .iter()
            .filter(|p| p.words.iter().any(|w| w.starts_with("легк")))
            .count();
        assert!(light > 0);
        assert_eq!(
            all_ids(&index, "лёгкий").len(),
            all_ids(&index, "легкий").len()
        );
    }

    #[test]
    fn the_last_word_is_also_a_prefix_and_ranks_after_the_word_itself() {
        let (index, products) = catalog(3_000, Shape::Catalog);
        let backpacks = with_word(&products, "рюкзак");
        assert_eq!(sorted(all_ids(&index, "рюкз")), backpacks);
        // Not a prefix when it is not the last word.
        let mut req = SearchProductsRequest {
            query: "рюкз синий".into(),
            ..Default::default()
        };
        assert!(
            index
                .search(&Search::new(&req).expect("valid"))
                .expect("search")
                .ids()
                .is_empty()
        );
        req.query = "синий рюкз".into();
        assert!(
            !index
                .search(&Search::new(&req).expect("valid"))
                .expect("search")
                .ids()
                .is_empty()
        );

        // A word and a longer word beginning with it: the word comes first.
        let mut index = SearchIndex::new().expect("index");
        for (id, name, category) in [
            (1, "Чайник Байкал", "Дом"),
            (2, "Чай зелёный", "Еда"),
            (3, "Чайник Про", "Дом"),
            (4, "Чай чёрный", "Еда"),
        ] {
            index.add(&stored(id, name, category, 100)).expect("add");
        }
        let snapshot = index.commit().expect("commit");
        let answer = snapshot.search(&search("чай", |_| {})).expect("search");
        assert_eq!(answer.ids(), vec![2, 4, 1, 3], "exact first, then by id");
        assert_eq!(
            answer.categories,
            vec![("Дом".to_owned(), 2), ("Еда".to_owned(), 2)]
        );
        let answer = snapshot
            .search(&search("чайник зеленый", |_| {}))
            .expect("search");
        assert!(answer.ids().is_empty(), "both words must match: {answer:?}");
    }

    #[test]
    fn filters_and_price_orders_equal_the_definition() {
        for shape in [Shape::Catalog, Shape::Words] {
            let (index, products) = catalog(5_000, shape);
            let category = products[0].category.clone();
            let cases = [
                search("", |r| r.category = category.clone()),
                search("", |r| {
                    r.min_price_cents = Some(100_000);
                    r.max_price_cents = Some(300_000);
                }),
                search("", |r| {
                    r.sort = SearchSort::PriceAsc.into();
                    r.category = category.clone();
                }),
                search("", |r| {
                    r.sort = SearchSort::PriceDesc.into();
                    r.offset = 37;
                }),
                search("", |r| r.category = "нет такой".into()),
            ];
            for s in &cases {
                let mut want: Vec<&Item> = products
                    .iter()
                    .filter(|p| s.category.as_ref().is_none_or(|c| &p.category == c))
                    .filter(|p| s.min_price_cents.is_none_or(|lo| p.price >= lo))
                    .filter(|p| s.max_price_cents.is_none_or(|hi| p.price <= hi))
                    .collect();
                match s.sort {
                    Sort::Relevance => want.sort_by_key(|p| p.id),
                    Sort::PriceAsc => want.sort_by_key(|p| (p.price, p.id)),
                    Sort::PriceDesc => want.sort_by_key(|p| (Reverse(p.price), p.id)),
                }
                let total = want.len() as u64;
                let page: Vec<i64> = want
                    .iter()
                    .skip(usize::try_from(s.offset).expect("offset"))
                    .take(usize::try_from(s.limit).expect("limit"))
                    .map(|p| p.id)
                    .collect();
                let answer = index.search(s).expect("search");
                assert_eq!(answer.ids(), page, "{shape:?} {s:?}");
                assert_eq!(answer.total, Total::of(total), "{shape:?} {s:?}");
                let counted: u64 = answer.categories.iter().map(|c| c.1).sum();
                assert_eq!(counted, total, "facets count every match: {s:?}");
            }
        }
    }

    #[test]
    fn counting_reports_a_bound_past_ten_thousand() {
        let (index, _) = catalog(12_000, Shape::Words);
        let answer = index
            .search(&search("", |r| r.limit = Some(3)))
            .expect("search");
        assert_eq!(answer.total, Total::AtLeast(crate::search::TOTAL_BOUND));
        assert_eq!(answer.ids(), vec![1, 4, 7]);
    }

    #[test]
    fn a_short_prefix_expands_to_a_bounded_number_of_words() {
        let (index, _) = catalog(20_000, Shape::Words);
        let f = index.fields;
        for prefix in ["", "а", "с", "1"] {
            let automaton =
                FuzzyTermQuery::new_prefix(Term::from_field_text(f.exact, prefix), 0, true)
                    .automaton()
                    .expect("automaton");
            let terms = index.expand(f.exact, &automaton).expect("expand");
            assert!(
                !terms.is_empty() || prefix == "1",
                "{prefix:?} expands to something"
            );
            assert!(terms.len() <= MAX_EXPANSIONS, "{prefix:?}: {}", terms.len());
        }
        // And a search ending in one letter answers.
        let answer = index
            .search(&search("", |r| r.query = "синий а".into()))
            .expect("search");
        assert!(answer.total != Total::Exact(0) || answer.ids().is_empty());
    }

    #[test]
    fn updates_and_deletes_show_after_a_commit_and_not_in_older_snapshots() {
        let mut index = SearchIndex::new().expect("index");
        index
            .add(&stored(1, "Синий рюкзак", "Туризм", 500))
            .expect("add");
        index
            .add(&stored(2, "Красная палатка", "Туризм", 900))
            .expect("add");
        let before = index.commit().expect("commit");
        index
            .upsert(&stored(1, "Синяя куртка", "Одежда", 700))
            .expect("upsert");
        index.remove(2);
        let after = index.commit().expect("commit");
        let ids = |s: &Snapshot, q: &str| s.search(&search(q, |_| {})).expect("search").ids();
        assert_eq!(ids(&before, "рюкзак"), vec![1]);
        assert_eq!(ids(&before, "палатка"), vec![2]);
        assert!(ids(&after, "рюкзак").is_empty());
        assert!(ids(&after, "палатка").is_empty());
        assert_eq!(ids(&after, "куртки"), vec![1]);
        assert_eq!(after.len(), 1);
    }

    /// (product id, score) of every match.
    type Scored = Vec<(i64, u32)>;

    impl Snapshot {
        /// Every match of `s`'s words (no filters) with its score, by
        /// product id: (tantivy's query, the bit-set executor).
        fn scores_both_ways(&self, s: &Search) -> (Scored, Scored) {
            let words_only = Search {
                category: None,
                min_price_cents: None,
                max_price_cents: None,
                ..s.clone()
            };
            let tokens = Self::query_tokens(&words_only);
            let ways: Vec<Arc<[Way]>> =
                tokens.iter().map(|t| self.ways(t).expect("ways")).collect();
            let ours = words::scores(&self.searcher, &self.columns, &ways).expect("scores");
            let query = self.query(&words_only).expect("query").expect("words");
            let n = self.searcher.search(&*query, &Count).expect("count");
            let mut theirs: Vec<(i64, u32)> = self
                .searcher
                .search(&*query, &TopDocs::with_limit(n.max(1)).order_by_score())
                .expect("top")
                .into_iter()
                .map(|(score, address)| (self.product(address).expect("stored").id, score as u32))
                .collect();
            theirs.sort_unstable();
            (theirs, ours)
        }
    }

    /// A view remembers the ways of a bounded number of tokens, and a
    /// remembered token answers as a fresh expansion does.
    #[test]
    fn a_view_remembers_a_bounded_number_of_tokens() {
        let (index, _) = catalog(2_000, Shape::Catalog);
        let first = index.search(&search("рюкзак", |_| {})).expect("search");
        assert_eq!(index.ways.lock().expect("lock").len(), 1);
        for i in 0..MAX_REMEMBERED_TOKENS + 10 {
            index
                .search(&search(&format!("слово{i}"), |_| {}))
                .expect("search");
            assert!(index.ways.lock().expect("lock").len() <= MAX_REMEMBERED_TOKENS);
        }
        let again = index.search(&search("рюкзак", |_| {})).expect("search");
        assert_eq!(first, again);
        assert!(!first.page.is_empty());
    }

    /// A view remembers the bit sets of the tokens it searched, within its
    /// byte budget, and a search answered from them answers as one that
    /// reads the postings afresh.
    #[test]
    fn a_view_remembers_token_sets_within_its_budget() {
        let (index, _) = catalog(2_000, Shape::Catalog);
        let s = search("рюкзак синий", |_| {});
        let first = index.search(&s).expect("search");
        assert!(!first.page.is_empty());
        let held = index.token_sets.lock().expect("lock").bytes();
        assert!(held > 0, "nothing remembered");
        let again = index.search(&s).expect("search");
        assert_eq!(first, again);
        assert_eq!(
            index.token_sets.lock().expect("lock").bytes(),
            held,
            "read twice"
        );
        assert_eq!(fresh_answer(&index, &s), first);
        // A budget of about three sets: past it the view starts over, and
        // the answers stay the same.
        let set = held / 2;
        let small = Snapshot {
            token_sets: Arc::new(Mutex::new(words::TokenSets::with_budget(3 * set))),
            ..index.clone()
        };
        for word in [
            "рюкзак",
            "синий",
            "палатка",
            "куртка",
            "рюкзак синий",
            "палатки",
        ] {
            let s = search(word, |_| {});
            assert_eq!(small.search(&s).expect("search"), fresh_answer(&index, &s));
            let bytes = small.token_sets.lock().expect("lock").bytes();
            assert!(bytes <= 3 * set, "{bytes} bytes held, budget {}", 3 * set);
        }
    }

    /// `s` answered by a view that remembers nothing.
    fn fresh_answer(index: &Snapshot, s: &Search) -> Answer {
        let fresh = Snapshot {
            token_sets: Arc::default(),
            ways: Arc::default(),
            ..index.clone()
        };
        fresh.search(s).expect("search")
    }

    /// The bit-set executor of searches with words answers exactly what
    /// tantivy's query for them answers (page, order, total, facets), on
    /// an index of several segments with deleted and updated products, for
    /// words as typed, in other forms, with typos, as prefixes, filtered and
    /// in every order; and so does it without the category sets (a
    /// segment with many categories).
    #[test]
    fn the_bit_set_executor_answers_as_tantivy_s_query() {
        let mut generator = Generator::new(5, Shape::Catalog);
        let mut index = SearchIndex::new().expect("index");
        let mut names = Vec::new();
        for id in 1..=6_000 {
            let p = generator.product();
            index
                .add(&stored(id, &p.name, &p.category, p.price_cents))
                .expect("add");
            names.push((p.name, p.category));
            if id % 2_000 == 0 {
                index.commit().expect("commit");
            }
        }
        for id in (1..=6_000).step_by(7) {
            index.remove(id);
        }
        for id in (3..=6_000).step_by(11) {
            let p = generator.product();
            index
                .upsert(&stored(id, &p.name, &p.category, p.price_cents))
                .expect("upsert");
        }
        let snapshot = index.commit().expect("commit");
        assert!(snapshot.searcher.segment_readers().len() > 1, "segments");
        assert!(
            snapshot.columns.iter().all(|c| c.category_sets.is_some()),
            "a few categories: a set each"
        );
        // Sets of its own: the counts a token remembers are counted the
        // way its view's columns allow.
        let without_sets = Snapshot {
            columns: snapshot
                .columns
                .iter()
                .map(|c| Arc::new(c.without_category_sets()))
                .collect(),
            token_sets: Arc::default(),
            ..snapshot.clone()
        };
        let mut state = 42u64;
        let mut next = |n: usize| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            usize::try_from(state >> 33).expect("31 bits") % n
        };
        let mut found = 0;
        for _ in 0..500 {
            let (name, category) = &names[next(names.len())];
            let all: Vec<String> = name.split_whitespace().map(str::to_owned).collect();
            let start = next(all.len());
            let end = (start + 1 + next(2)).min(all.len());
            let mut words = all[start..end].to_vec();
            let w = next(words.len());
            let chars: Vec<char> = words[w].chars().collect();
            match next(5) {
                1 => words[w] = words[w].to_uppercase(),
                // A typo: one letter left out.
                2 if chars.len() > 5 => {
                    words[w] = chars
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| *i != 3)
                        .map(|(_, c)| c)
                        .collect();
                }
                // The last word cut short: a prefix.
                3 => {
                    let last = words.len() - 1;
                    let c: Vec<char> = words[last].chars().collect();
                    words[last] = c[..c.len().div_ceil(2)].iter().collect();
                }
                // Another form.
                4 => words[w].push('ы'),
                _ => {}
            }
            let mut r = SearchProductsRequest {
                query: words.join(" "),
                ..Default::default()
            };
            match next(4) {
                1 => r.category = category.clone(),
                2 => {
                    r.min_price_cents = Some(100_000);
                    r.max_price_cents = Some(500_000);
                }
                _ => {}
            }
            r.sort = [
                SearchSort::Relevance,
                SearchSort::PriceAsc,
                SearchSort::PriceDesc,
            ][next(3)]
            .into();
            r.offset = [0, 0, 5, 37][next(4)];
            r.limit = Some([100, 20, 3][next(3)]);
            // A query the service refuses (too short a word) is not asked.
            let Ok(s) = Search::new(&r) else {
                continue;
            };
            let bits = snapshot.search(&s).expect("bit sets");
            let query = snapshot.search_query(&s).expect("tantivy query");
            assert_eq!(bits, query, "{s:?}");
            let per_match = without_sets.search(&s).expect("bit sets, no category sets");
            assert_eq!(per_match, query, "without category sets: {s:?}");
            // And every match's score, not only the page's order.
            let (theirs, ours) = snapshot.scores_both_ways(&s);
            if ours != theirs {
                let first = ours.iter().zip(&theirs).find(|(a, b)| a != b);
                panic!(
                    "scores of {s:?}: {} matches against tantivy's {}, first difference \
                     (id, ours) (id, tantivy's): {first:?}",
                    ours.len(),
                    theirs.len()
                );
            }
            if bits.total != Total::Exact(0) {
                found += 1;
            }
        }
        assert!(found > 300, "most searches find something: {found} of 500");
    }

    /// A page is read from the index: each product as it was stored (the
    /// name as written, not folded), from the same view that ranked it.
    #[test]
    fn a_page_shows_the_products_as_stored_in_the_view_that_ranked_them() {
        let mut index = SearchIndex::new().expect("index");
        let first = stored(7, "Ёлочная гирлянда «Звезда»", "Дом", 129_990);
        index.add(&first).expect("add");
        let before = index.commit().expect("commit");
        let changed = Product {
            description: "Новое описание".into(),
            price_cents: 99_900,
            ..first.clone()
        };
        index.upsert(&changed).expect("upsert");
        let after = index.commit().expect("commit");
        let page = |s: &Snapshot| s.search(&search("елочная", |_| {})).expect("search").page;
        assert_eq!(page(&before), vec![first]);
        assert_eq!(page(&after), vec![changed]);
    }
}
