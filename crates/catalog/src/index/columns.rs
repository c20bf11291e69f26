//! A segment's fast fields as plain arrays, read once per segment.
//!
//! A search with words reads the price and the category of every match (to
//! filter, count and facet) and the id of every candidate for the page:
//! through tantivy's columns that is a codec's `get_val` behind a dynamic
//! call per document, which cost a quarter of a search's time
//! (docs/performance.md). A segment never changes, so its arrays are read
//! when a view first holds it and shared by every later view that does:
//! 18 bytes per product, plus one bit per product and category when the
//! segment has at most [`MAX_CATEGORY_SETS`] categories (the facet counts
//! then take a word at a time: 1 byte per product for 8 categories).

use std::{collections::HashMap, sync::Arc};

use tantivy::{DocId, Searcher, SegmentReader, columnar::ColumnValues as _, index::SegmentId};

use super::{IndexError, bits::Bits};

/// Up to this many categories in a segment, each has a set of its
/// documents ([`Columns::category_sets`]): at 1M products, 125 KiB each.
pub(super) const MAX_CATEGORY_SETS: usize = 64;

/// No category (never the case for a stored product).
pub(super) const NO_CATEGORY: u32 = u32::MAX;

/// One segment's ids, prices and category ordinals, by document.
#[derive(Clone)]
pub(super) struct Columns {
    pub ids: Vec<i64>,
    pub prices: Vec<i64>,
    /// The category's ordinal in [`Self::category_names`]: two bytes per
    /// product, so that the facet count's reads stay in the cache.
    pub categories: Ords,
    /// Whether the ids grow with the document number (a full build adds
    /// products by id): then, of two matches of this segment with the same
    /// sort key, the one seen first ranks first, and the page needs no id
    /// to decide it.
    pub ids_ascending: bool,
    /// The segment's categories, by ordinal.
    pub category_names: Vec<String>,
    /// Each category's documents, by ordinal, when the segment has at most
    /// [`MAX_CATEGORY_SETS`] categories: counting a search's matches per
    /// category is then an AND and a popcount per 64 documents, instead
    /// of a (cache-missing) read of every match's category.
    pub category_sets: Option<Vec<Bits>>,
}

impl Columns {
    fn read(segment: &SegmentReader) -> Result<Self, IndexError> {
        let max_doc = segment.max_doc() as usize;
        let fast = segment.fast_fields();
        let mut ids = vec![0; max_doc];
        let mut prices = vec![0; max_doc];
        // The category column's ordinals (u64::MAX: none), narrowed below.
        let mut ords = vec![u64::MAX; max_doc];
        let mut category_names = Vec::new();
        if max_doc > 0 {
            fast.i64("id")?
                .first_or_default_col(0)
                .get_range(0, &mut ids);
            fast.i64("price")?
                .first_or_default_col(0)
                .get_range(0, &mut prices);
            if let Some(column) = fast.str("category")? {
                column
                    .ords()
                    .clone()
                    .first_or_default_col(u64::MAX)
                    .get_range(0, &mut ords);
                for ord in 0..column.num_terms() as u64 {
                    let mut name = String::new();
                    column.ord_to_str(ord, &mut name)?;
                    category_names.push(name);
                }
            }
        }
        let ids_ascending = ids.windows(2).all(|w| w[0] < w[1]);
        let category_sets = (category_names.len() <= MAX_CATEGORY_SETS).then(|| {
            let max_doc = segment.max_doc();
            let mut sets: Vec<Bits> = category_names.iter().map(|_| Bits::new(max_doc)).collect();
            for (doc, &ord) in (0..max_doc).zip(&ords) {
                if let Some(set) = usize::try_from(ord).ok().and_then(|o| sets.get_mut(o)) {
                    set.insert(doc);
                }
            }
            sets
        });
        Ok(Self {
            ids,
            prices,
            category_sets,
            categories: Ords::new(&ords, category_names.len()),
            category_names,
            ids_ascending,
        })
    }

    /// The same arrays without the category sets: what a segment with
    /// more than [`MAX_CATEGORY_SETS`] categories has.
    #[cfg(test)]
    pub fn without_category_sets(&self) -> Self {
        Self {
            category_sets: None,
            ..self.clone()
        }
    }

    pub fn id(&self, doc: DocId) -> i64 {
        self.ids.get(doc as usize).copied().unwrap_or(0)
    }

    pub fn price(&self, doc: DocId) -> i64 {
        self.prices.get(doc as usize).copied().unwrap_or(0)
    }

    pub fn category(&self, doc: DocId) -> u32 {
        self.categories.get(doc)
    }

    /// The ordinal of category `name` in this segment, if any product of
    /// it has that category.
    pub fn category_ord(&self, name: &str) -> Option<u32> {
        self.category_names
            .iter()
            .position(|n| n == name)
            .and_then(|o| u32::try_from(o).ok())
    }
}

/// Category ordinals by document, in two bytes each when the segment has
/// fewer than 65 535 categories (the last value means none).
#[derive(Clone)]
pub(super) enum Ords {
    Narrow(Vec<u16>),
    Wide(Vec<u32>),
}

impl Ords {
    /// From the column's ordinals (anything past the narrow or wide range,
    /// such as u64::MAX, means none).
    fn new(ords: &[u64], categories: usize) -> Self {
        if categories < usize::from(u16::MAX) {
            Self::Narrow(
                ords.iter()
                    .map(|&o| u16::try_from(o).unwrap_or(u16::MAX))
                    .collect(),
            )
        } else {
            Self::Wide(
                ords.iter()
                    .map(|&o| u32::try_from(o).unwrap_or(NO_CATEGORY))
                    .collect(),
            )
        }
    }

    fn get(&self, doc: DocId) -> u32 {
        let doc = doc as usize;
        match self {
            Self::Narrow(v) => v.get(doc).map_or(NO_CATEGORY, |&o| {
                if o == u16::MAX {
                    NO_CATEGORY
                } else {
                    u32::from(o)
                }
            }),
            Self::Wide(v) => v.get(doc).copied().unwrap_or(NO_CATEGORY),
        }
    }
}

/// The arrays of the segments of the last view, by segment.
#[derive(Default)]
pub(super) struct ColumnCache {
    segments: HashMap<SegmentId, Arc<Columns>>,
}

impl ColumnCache {
    /// The arrays of each of `searcher`'s segments, in its segment order;
    /// forgets segments it no longer holds.
    pub fn for_view(&mut self, searcher: &Searcher) -> Result<Arc<[Arc<Columns>]>, IndexError> {
        let mut kept = HashMap::new();
        let mut out = Vec::new();
        for segment in searcher.segment_readers() {
            let id = segment.segment_id();
            let columns = match self.segments.remove(&id) {
                Some(c) => c,
                None => Arc::new(Columns::read(segment)?),
            };
            kept.insert(id, Arc::clone(&columns));
            out.push(columns);
        }
        self.segments = kept;
        Ok(out.into())
    }
}
