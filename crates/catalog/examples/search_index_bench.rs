//! The in-memory search index (`otus_catalog::index`) on a real catalog:
//! loads every product of `DATABASE_URL` (PostgreSQL) in id order, reports
//! the build time and the memory it took, then runs the searches of
//! `--searches FILE` (one per line, words separated by spaces; written by
//! `loadtest/search_candidates.py --dump-searches`) and prints latency
//! percentiles, single-threaded, the same table as that script. Answers are
//! checked against the database's trigram search for the first 50.
//!
//! cargo run --release -p otus-catalog --example search_index_bench -- --searches /tmp/searches.txt

#![expect(clippy::expect_used, reason = "a benchmark: a failure ends the run")]

use std::time::Instant;

use futures::TryStreamExt as _;
use otus_catalog::{
    index::SearchIndex,
    search::{Search, Total},
};
use otus_proto::catalog::v1::SearchProductsRequest;
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
    let mut index = SearchIndex::new();
    {
        let mut rows = sea_orm::sqlx::query(
            "SELECT id, name_search, category, price_cents FROM products ORDER BY id",
        )
        .fetch(&mut conn);
        while let Some(row) = rows.try_next().await.expect("row") {
            index
                .add(
                    row.get::<i64, _>(0),
                    row.get::<&str, _>(1),
                    row.get::<&str, _>(2),
                    row.get::<i64, _>(3),
                )
                .expect("ids ascend");
            if index.len().is_multiple_of(1_000_000) {
                eprintln!("  {} products indexed", index.len());
            }
        }
    }
    let built = started.elapsed();
    let memory = rss_kib().saturating_sub(before);
    eprintln!(
        "{} products indexed in {:.1} s; resident memory +{} MiB",
        index.len(),
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
    let mut times = Vec::with_capacity(searches.len());
    let mut mismatches = 0;
    for (i, s) in searches.iter().enumerate() {
        let _ = index.search(s);
        let t = Instant::now();
        let (ids, total) = index.search(s);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        if i < 50 {
            let words: Vec<String> = s
                .words
                .iter()
                .map(|w| {
                    format!(
                        "%{}%",
                        w.replace('\\', "\\\\")
                            .replace('%', "\\%")
                            .replace('_', "\\_")
                    )
                })
                .collect();
            let cond = (1..=words.len())
                .map(|n| format!("name_search LIKE ${n}"))
                .collect::<Vec<_>>()
                .join(" AND ");
            let sql = format!(
                "SELECT id FROM products WHERE {cond} ORDER BY id LIMIT {}",
                s.limit
            );
            // Only placeholders and a number are formatted in; the words are bound.
            let mut q = sea_orm::sqlx::query_scalar::<_, i64>(sea_orm::sqlx::AssertSqlSafe(sql));
            for w in &words {
                q = q.bind(w);
            }
            let expected: Vec<i64> = q.fetch_all(&mut conn).await.expect("reference");
            let count_sql = format!(
                "SELECT count(*) FROM (SELECT id FROM products WHERE {cond} LIMIT 10001) s"
            );
            let mut q =
                sea_orm::sqlx::query_scalar::<_, i64>(sea_orm::sqlx::AssertSqlSafe(count_sql));
            for w in &words {
                q = q.bind(w);
            }
            let counted = q.fetch_one(&mut conn).await.expect("count");
            if ids != expected || total != Total::of(u64::try_from(counted).expect("count")) {
                mismatches += 1;
            }
        }
    }
    times.sort_by(f64::total_cmp);
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    println!(
        "memory    | {:7.3} | {:7.3} | {:7.3} | {:7.3} | {:7.3} | {mismatches} of the first 50",
        pct(&times, 50.0),
        pct(&times, 95.0),
        pct(&times, 99.0),
        times.last().copied().unwrap_or(0.0),
        mean
    );
}
