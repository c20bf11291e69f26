//! The search index (`otus_catalog::index`, tantivy) on a real catalog:
//! loads every product of `DATABASE_URL` (PostgreSQL) in id order, reports
//! the build time and the memory it took, then runs the searches of
//! `--searches FILE` (one per line, words separated by spaces; written by
//! `loadtest/search_candidates.py --dump-searches`) and prints latency
//! percentiles (page of 20 by relevance + bounded total + category counts),
//! single-threaded, the same table as that script, and how many searches
//! found something.
//!
//! cargo run --release -p otus-catalog --example search_index_bench -- --searches /tmp/searches.txt [--repeat N]

#![expect(clippy::expect_used, reason = "a benchmark: a failure ends the run")]

use std::time::Instant;

use futures::TryStreamExt as _;
use otus_catalog::{
    index::SearchIndex,
    search::{Search, Total},
};
use otus_proto::catalog::v1::{Product, SearchProductsRequest};
use sea_orm::sqlx::{Connection as _, PgConnection, Row as _};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        })
        .unwrap_or(0)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .iter()
        .position(|a| a == "--searches")
        .and_then(|i| args.get(i + 1))
        .expect("--searches FILE");
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL (PostgreSQL)");
    let mut conn = PgConnection::connect(&url).await.expect("connect");

    let before = rss_kib();
    let started = Instant::now();
    let mut index = SearchIndex::new().expect("index");
    let mut n = 0u64;
    {
        let mut rows = sea_orm::sqlx::query(
            "SELECT id, name, description, category, price_cents FROM products ORDER BY id",
        )
        .fetch(&mut conn);
        while let Some(row) = rows.try_next().await.expect("row") {
            index
                .add(&Product {
                    id: row.get(0),
                    name: row.get(1),
                    description: row.get(2),
                    category: row.get(3),
                    price_cents: row.get(4),
                })
                .expect("add");
            n += 1;
            if n.is_multiple_of(1_000_000) {
                eprintln!("  {n} products indexed");
            }
        }
    }
    let merging = Instant::now();
    let snapshot = index.merge_all().expect("merge");
    let merged = merging.elapsed();
    let built = started.elapsed();
    eprintln!(
        "  (of which commit + merge into one segment: {:.1} s)",
        merged.as_secs_f64()
    );
    let memory = rss_kib().saturating_sub(before);
    eprintln!(
        "{} products indexed in {:.1} s; resident memory +{} MiB",
        snapshot.len(),
        built.as_secs_f64(),
        memory / 1024
    );

    let searches: Vec<Search> = std::fs::read_to_string(path)
        .expect("searches file")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            Search::new(&SearchProductsRequest {
                query: l.to_owned(),
                ..Default::default()
            })
            .expect("valid search")
        })
        .collect();
    // `--repeat N`: search N more rounds untimed first (for a profiler).
    let repeat: usize = args
        .iter()
        .position(|a| a == "--repeat")
        .and_then(|i| args.get(i + 1))
        .map_or(0, |n| n.parse().expect("--repeat N"));
    for _ in 0..repeat {
        for s in &searches {
            let _ = snapshot.search(s);
        }
    }
    let mut times = Vec::with_capacity(searches.len());
    let mut found = 0;
    for s in &searches {
        let _ = snapshot.search(s);
        let t = Instant::now();
        let answer = snapshot.search(s).expect("search");
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        found += usize::from(answer.total != Total::Exact(0));
    }
    times.sort_by(f64::total_cmp);
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    println!(
        "tantivy   | {:7.3} | {:7.3} | {:7.3} | {:7.3} | {:7.3} | {found} of {} found something",
        pct(&times, 50.0),
        pct(&times, 95.0),
        pct(&times, 99.0),
        times.last().copied().unwrap_or(0.0),
        mean,
        searches.len()
    );
}
