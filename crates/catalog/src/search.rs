//! Search parameters: validation, normalisation, the cache key, and the SQL.

use otus_proto::catalog::v1::{SearchProductsRequest, SearchSort};
use sea_orm::{
    ColumnTrait as _, Condition, DbErr, EntityTrait as _, PaginatorTrait as _, QueryFilter as _,
    QueryOrder as _, QuerySelect as _,
    sea_query::{Expr, LikeExpr},
};

use crate::{entity, error::CatalogError};

/// Default page size.
pub const DEFAULT_LIMIT: i32 = 20;
/// Largest page size.
pub const MAX_LIMIT: i32 = 100;
/// Deepest page: `offset + limit` at most this (Elasticsearch's
/// `max_result_window`). Deeper paging would cost the database a walk past
/// every skipped match; narrowing the search is the way further.
pub const MAX_WINDOW: i32 = 10_000;
/// `total` is exact up to this many matches; above it, `total` is this
/// bound and the relation is "gte" (Elasticsearch's `track_total_hits`).
/// Counting stops there, so no search counts more rows than this.
pub const TOTAL_BOUND: u64 = 10_000;
/// A query's words must include one at least this long: the index is built
/// from three-character pieces (trigrams), so a search of only shorter
/// words would read the whole catalog.
pub const MIN_INDEXED_WORD_CHARS: usize = 3;
/// Most words in a query.
pub const MAX_WORDS: usize = 10;
/// Longest query, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// Most tokens in a query: its words cut at every character that is not a
/// letter or a digit (`про-505` is two).
pub const MAX_TOKENS: usize = 16;

/// How names and query words are compared: Unicode lowercase, so `Космос`,
/// `КОСМОС` and `космос` are one word. Done in Rust, not SQL, so SQLite
/// (whose `lower()` is ASCII-only) and PostgreSQL (whose `lower()` depends
/// on the database locale) agree.
pub fn fold(s: &str) -> String {
    s.to_lowercase()
}

/// How words are matched in SQL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Strategy {
    /// `name_search LIKE '%word%'`: the trigram index on PostgreSQL.
    #[default]
    Indexed,
    /// `name ILIKE '%word%'`, which no index serves: what the original
    /// solution did. PostgreSQL only, for the benchmark's baseline
    /// (`CATALOG_SEARCH_BASELINE=1`); never for production.
    UnindexedBaseline,
}

/// How the catalog answers searches: the one owner of the rule that joins
/// the two public settings (`CATALOG_SEARCH_INDEX`, `CATALOG_SEARCH_BASELINE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SearchMode {
    /// The in-memory index answers (the default); until its first build,
    /// searches are refused with a retryable 503 and readiness waits.
    #[default]
    Index,
    /// The database answers on its trigram index (`CATALOG_SEARCH_INDEX=false`).
    Database,
    /// The database answers without an index, as the original solution did
    /// (`CATALOG_SEARCH_BASELINE=true`, which wins over the index setting):
    /// a benchmark baseline, never for production.
    UnindexedBaseline,
}

impl SearchMode {
    /// The mode the two public settings ask for: the baseline wins.
    pub fn from_settings(index: bool, baseline: bool) -> Self {
        match (baseline, index) {
            (true, _) => Self::UnindexedBaseline,
            (false, true) => Self::Index,
            (false, false) => Self::Database,
        }
    }

    /// Whether searches use the in-memory index.
    pub fn in_memory_index(self) -> bool {
        self == Self::Index
    }

    /// How the database matches words when it answers.
    pub fn sql(self) -> Strategy {
        match self {
            Self::UnindexedBaseline => Strategy::UnindexedBaseline,
            Self::Index | Self::Database => Strategy::Indexed,
        }
    }
}

/// The order of a search's answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sort {
    /// Best match first (see `index.rs`); the database orders by id.
    #[default]
    Relevance,
    PriceAsc,
    PriceDesc,
}

/// A validated, normalised search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Search {
    /// Folded words, sorted and without duplicates: word order and case do
    /// not change which products match, so they do not change the cache key
    /// either.
    pub words: Vec<String>,
    /// The last word as typed (folded): it also matches as a prefix.
    pub last_word: Option<String>,
    pub sort: Sort,
    pub category: Option<String>,
    pub min_price_cents: Option<i64>,
    pub max_price_cents: Option<i64>,
    pub limit: i32,
    pub offset: i32,
}

fn bad(reason: &'static str, message: impl Into<String>) -> CatalogError {
    CatalogError::BadRequest {
        reason,
        message: message.into(),
    }
}

impl Search {
    /// Validates and normalises a request.
    pub fn new(req: &SearchProductsRequest) -> Result<Self, CatalogError> {
        if req.query.chars().count() > MAX_QUERY_CHARS {
            return Err(bad(
                "INVALID_QUERY",
                format!("q must be at most {MAX_QUERY_CHARS} characters"),
            ));
        }
        // NUL cannot be stored or compared by PostgreSQL (an error, not a
        // miss), and SQLite cuts a LIKE pattern at it (so `%00x` would match
        // everything): refuse control characters other than whitespace, which
        // only separates words.
        let unprintable = |s: &str| {
            s.chars()
                .any(|c| c.is_control() && !c.is_ascii_whitespace())
        };
        if unprintable(&req.query) {
            return Err(bad(
                "INVALID_QUERY",
                "q must not contain control characters",
            ));
        }
        if unprintable(&req.category) {
            return Err(bad(
                "INVALID_CATEGORY",
                "category must not contain control characters",
            ));
        }
        let mut words: Vec<String> = req.query.split_whitespace().map(fold).collect();
        let last_word = words.last().cloned();
        let tokens = words
            .iter()
            .flat_map(|w| w.split(|c: char| !c.is_alphanumeric()))
            .filter(|t| !t.is_empty())
            .count();
        if tokens > MAX_TOKENS {
            return Err(bad(
                "INVALID_QUERY",
                format!(
                    "q must have at most {MAX_TOKENS} words, counting each run of letters \
                     and digits (про-505 is two)"
                ),
            ));
        }
        words.sort();
        words.dedup();
        if words.len() > MAX_WORDS {
            return Err(bad(
                "INVALID_QUERY",
                format!("q must have at most {MAX_WORDS} words"),
            ));
        }
        if !words.is_empty()
            && words
                .iter()
                .all(|w| w.chars().count() < MIN_INDEXED_WORD_CHARS)
        {
            return Err(bad(
                "QUERY_TOO_SHORT",
                format!(
                    "q needs at least one word of {MIN_INDEXED_WORD_CHARS} or more characters \
                     (shorter words may be added to narrow it)"
                ),
            ));
        }
        let limit = match req.limit {
            None => DEFAULT_LIMIT,
            Some(l) if (1..=MAX_LIMIT).contains(&l) => l,
            Some(l) => {
                return Err(bad(
                    "INVALID_LIMIT",
                    format!("limit must be an integer from 1 to {MAX_LIMIT}, got {l}"),
                ));
            }
        };
        if req.offset < 0 || req.offset > MAX_WINDOW - limit {
            return Err(bad(
                "INVALID_OFFSET",
                format!(
                    "offset must be 0..{} with limit {limit} (offset + limit at most \
                     {MAX_WINDOW}; narrow the search to see further), got {}",
                    MAX_WINDOW - limit,
                    req.offset
                ),
            ));
        }
        for (name, p) in [
            ("minPrice", req.min_price_cents),
            ("maxPrice", req.max_price_cents),
        ] {
            if p.is_some_and(|p| p < 0) {
                return Err(bad(
                    "INVALID_PRICE",
                    format!("{name} must be a non-negative number"),
                ));
            }
        }
        if let (Some(lo), Some(hi)) = (req.min_price_cents, req.max_price_cents)
            && lo > hi
        {
            return Err(bad(
                "INVALID_PRICE_RANGE",
                "minPrice must not be greater than maxPrice",
            ));
        }
        let category = Some(req.category.trim().to_owned()).filter(|c| !c.is_empty());
        let sort = match SearchSort::try_from(req.sort) {
            Ok(SearchSort::Unspecified | SearchSort::Relevance) => Sort::Relevance,
            Ok(SearchSort::PriceAsc) => Sort::PriceAsc,
            Ok(SearchSort::PriceDesc) => Sort::PriceDesc,
            Err(_) => {
                return Err(bad(
                    "INVALID_SORT",
                    format!("sort {} is not a known order", req.sort),
                ));
            }
        };
        Ok(Self {
            words,
            last_word,
            sort,
            category,
            min_price_cents: req.min_price_cents,
            max_price_cents: req.max_price_cents,
            limit,
            offset: req.offset,
        })
    }

    /// One string per distinct answer: the cache key.
    pub fn cache_key(&self) -> String {
        let opt = |v: Option<i64>| v.map_or_else(String::new, |v| v.to_string());
        // Strings in Debug form (quoted, escaped), so no query or category
        // text can imitate another parameter's part of the key.
        format!(
            "v4|q={:?}|last={:?}|s={:?}|c={:?}|min={}|max={}|l={}|o={}",
            self.words,
            self.last_word,
            self.sort,
            self.category,
            opt(self.min_price_cents),
            opt(self.max_price_cents),
            self.limit,
            self.offset,
        )
    }

    fn condition(&self, strategy: Strategy) -> Condition {
        let mut c = Condition::all();
        for w in &self.words {
            // `%`, `_` and `\` in a word are literal characters, not patterns.
            let escaped = w
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            let pattern = format!("%{escaped}%");
            c = c.add(match strategy {
                Strategy::Indexed => {
                    entity::Column::NameSearch.like(LikeExpr::new(pattern).escape('\\'))
                }
                Strategy::UnindexedBaseline => {
                    Expr::cust_with_values("\"name\" ILIKE $1", [pattern])
                }
            });
        }
        if let Some(cat) = &self.category {
            c = c.add(entity::Column::Category.eq(cat.clone()));
        }
        if let Some(lo) = self.min_price_cents {
            c = c.add(entity::Column::PriceCents.gte(lo));
        }
        if let Some(hi) = self.max_price_cents {
            c = c.add(entity::Column::PriceCents.lte(hi));
        }
        c
    }

    /// The page (by id, or price then id) and the number of matches, counted up to
    /// [`TOTAL_BOUND`] + 1 (more than the bound means "at least the bound").
    pub async fn run(
        &self,
        db: &impl sea_orm::ConnectionTrait,
        strategy: Strategy,
    ) -> Result<(Vec<entity::Model>, Total), DbErr> {
        let mut page = entity::Entity::find().filter(self.condition(strategy));
        page = match self.sort {
            Sort::Relevance => page,
            Sort::PriceAsc => page.order_by_asc(entity::Column::PriceCents),
            Sort::PriceDesc => page.order_by_desc(entity::Column::PriceCents),
        };
        let page = page
            .order_by_asc(entity::Column::Id)
            .limit(u64::from(self.limit.unsigned_abs()))
            .offset(u64::try_from(self.offset).unwrap_or(0))
            .all(db);
        // SELECT COUNT(*) FROM (SELECT id ... LIMIT bound + 1): counting
        // stops at the bound.
        let counted = entity::Entity::find()
            .select_only()
            .column(entity::Column::Id)
            .filter(self.condition(strategy))
            .limit(TOTAL_BOUND + 1)
            .count(db);
        let (rows, counted) = tokio::try_join!(page, counted)?;
        Ok((rows, Total::of(counted)))
    }
}

/// A search's total: exact, or a lower bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Total {
    Exact(u64),
    AtLeast(u64),
}

impl Total {
    /// From a count taken with `LIMIT TOTAL_BOUND + 1`.
    pub fn of(counted: u64) -> Self {
        if counted > TOTAL_BOUND {
            Self::AtLeast(TOTAL_BOUND)
        } else {
            Self::Exact(counted)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_baseline_setting_wins_and_only_the_index_mode_builds_an_index() {
        use SearchMode::*;
        let modes: Vec<(bool, bool, SearchMode, bool, Strategy)> =
            [(true, false), (false, false), (true, true), (false, true)]
                .into_iter()
                .map(|(index, baseline)| {
                    let mode = SearchMode::from_settings(index, baseline);
                    (index, baseline, mode, mode.in_memory_index(), mode.sql())
                })
                .collect();
        assert_eq!(
            modes,
            [
                (true, false, Index, true, Strategy::Indexed),
                (false, false, Database, false, Strategy::Indexed),
                (
                    true,
                    true,
                    UnindexedBaseline,
                    false,
                    Strategy::UnindexedBaseline
                ),
                (
                    false,
                    true,
                    UnindexedBaseline,
                    false,
                    Strategy::UnindexedBaseline
                ),
            ]
        );
    }

    fn req(q: &str) -> SearchProductsRequest {
        SearchProductsRequest {
            query: q.into(),
            ..Default::default()
        }
    }

    #[test]
    fn word_order_case_and_repeats_map_to_one_key() {
        // The last word counts (it is also a prefix); the others' order not.
        let a = Search::new(&req("Космос  ракета")).unwrap();
        let b = Search::new(&req("РАКЕТА космос ракета")).unwrap();
        assert_eq!(a.cache_key(), b.cache_key());
        assert_ne!(
            a.cache_key(),
            Search::new(&req("космос")).unwrap().cache_key()
        );
    }

    #[test]
    fn bad_parameters_are_refused() {
        let with = |f: &dyn Fn(&mut SearchProductsRequest)| {
            let mut r = req("");
            f(&mut r);
            Search::new(&r).err().map(|e| match e {
                CatalogError::BadRequest { reason, .. } => reason,
                _ => "other",
            })
        };
        assert_eq!(with(&|r| r.limit = Some(-1)), Some("INVALID_LIMIT"));
        assert_eq!(with(&|r| r.limit = Some(0)), Some("INVALID_LIMIT"));
        assert_eq!(with(&|r| r.limit = Some(101)), Some("INVALID_LIMIT"));
        assert_eq!(with(&|r| r.offset = -1), Some("INVALID_OFFSET"));
        assert_eq!(
            with(&|r| r.min_price_cents = Some(-5)),
            Some("INVALID_PRICE")
        );
        assert_eq!(
            with(&|r| {
                r.min_price_cents = Some(500);
                r.max_price_cents = Some(100);
            }),
            Some("INVALID_PRICE_RANGE")
        );
        assert_eq!(
            with(&|r| r.query = (0..11).map(|i| format!("w{i} ")).collect()),
            Some("INVALID_QUERY")
        );
        assert_eq!(
            with(&|r| r.query = "abc ".repeat(11)),
            None,
            "repeats count once"
        );
        assert_eq!(with(&|r| r.query = "ab".into()), Some("QUERY_TOO_SHORT"));
        assert_eq!(with(&|r| r.query = "a bc".into()), Some("QUERY_TOO_SHORT"));
        assert_eq!(
            with(&|r| r.query = "a bc abc".into()),
            None,
            "one long word suffices"
        );
        assert_eq!(with(&|r| r.query = "ёж".into()), Some("QUERY_TOO_SHORT"));
        assert_eq!(
            with(&|r| r.query = "ёжик".into()),
            None,
            "characters, not bytes"
        );
        assert_eq!(
            with(&|r| {
                r.offset = 9990;
                r.limit = Some(10);
            }),
            None,
            "the window's last page"
        );
        assert_eq!(
            with(&|r| {
                r.offset = 9991;
                r.limit = Some(10);
            }),
            Some("INVALID_OFFSET")
        );
        assert_eq!(
            with(&|r| r.offset = 9981),
            Some("INVALID_OFFSET"),
            "the default limit counts"
        );
        assert_eq!(with(&|r| r.limit = None), None, "unset means the default");
        assert_eq!(with(&|r| r.query = "abc\0b".into()), Some("INVALID_QUERY"));
        assert_eq!(with(&|r| r.query = "\u{85}".into()), Some("INVALID_QUERY"));
        assert_eq!(
            with(&|r| r.category = "\0".into()),
            Some("INVALID_CATEGORY")
        );
        assert_eq!(
            with(&|r| r.query = "abc\tb\nc".into()),
            None,
            "whitespace separates"
        );
    }

    #[test]
    fn query_text_cannot_imitate_another_parameter_in_the_cache_key() {
        let mut crafted = req("abc|c=b");
        crafted.category = String::new();
        let mut real = req("abc");
        real.category = "b".into();
        assert_ne!(
            Search::new(&crafted).unwrap().cache_key(),
            Search::new(&real).unwrap().cache_key()
        );
        let mut crafted = req(r#"abc"|c=Some("b")"#);
        crafted.category = String::new();
        assert_ne!(
            Search::new(&crafted).unwrap().cache_key(),
            Search::new(&real).unwrap().cache_key()
        );
    }
}

#[cfg(test)]
mod total_tests {
    use super::{TOTAL_BOUND, Total};

    #[test]
    fn a_count_past_the_bound_is_a_lower_bound() {
        assert_eq!(Total::of(0), Total::Exact(0));
        assert_eq!(Total::of(TOTAL_BOUND), Total::Exact(TOTAL_BOUND));
        assert_eq!(Total::of(TOTAL_BOUND + 1), Total::AtLeast(TOTAL_BOUND));
    }
}
