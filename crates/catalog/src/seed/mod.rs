//! The product data behind `otus seed-products`.
//!
//! - [`generate`]: plausible Russian product names, descriptions, categories
//!   and prices, deterministic for a given seed (own SplitMix64, so a
//!   dependency upgrade cannot change the data). About 3% of names contain
//!   «Космос» in some capitalisation; "космический" also appears, which must
//!   *not* match a search for «космос».
//! - [`load`]: the bulk loader: `COPY … FROM STDIN` on PostgreSQL, multi-row
//!   `INSERT`s in transactions of a batch each on SQLite.

pub mod generate;
pub mod load;

pub use generate::{Generator, NewProduct, Shape};
pub use load::{Mode, Report, SeedError, load};
