//! Product search: answers match a reference, the cache is transparent, bad
//! parameters are 400, and a dead Redis does not fail searches.

use std::{
    collections::BTreeMap,
    process::Stdio,
    time::{Duration, Instant},
};

use otus_catalog::{index, search::fold, seed};
use sea_orm::{ConnectionTrait as _, Statement};
use serde_json::Value;

use crate::helpers::{Backend, Options, TestApp, assert_error, on_both_backends};

/// Products in the fixed data set (generator seed 42).
const COUNT: u64 = 3000;

async fn seeded(app: &TestApp) {
    let db = otus_db::connect_plain(&app.database_url)
        .await
        .expect("connect");
    let report = seed::load(
        &db,
        COUNT,
        42,
        seed::Shape::Catalog,
        seed::Mode::Replace,
        1000,
        |_, _| {},
    )
    .await
    .expect("seed");
    assert_eq!(report.inserted, COUNT);
    app.catalog_index_current().await;
}

#[derive(Debug, PartialEq)]
struct Row {
    id: i64,
    name: String,
    category: String,
    price_cents: i64,
}

/// The reference: every row straight from SQL, filtered by the plain
/// definition (each folded word is a substring of the folded name).
async fn reference(
    app: &TestApp,
    words: &[&str],
    category: Option<&str>,
    min: Option<i64>,
    max: Option<i64>,
) -> Vec<Row> {
    let db = otus_db::connect_plain(&app.database_url)
        .await
        .expect("connect");
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT id, name, category, price_cents FROM products ORDER BY id",
        ))
        .await
        .expect("query");
    rows.into_iter()
        .map(|r| Row {
            id: r.try_get("", "id").expect("id"),
            name: r.try_get("", "name").expect("name"),
            category: r.try_get("", "category").expect("category"),
            price_cents: r.try_get("", "price_cents").expect("price"),
        })
        .filter(|r| words.iter().all(|w| fold(&r.name).contains(&fold(w))))
        .filter(|r| category.is_none_or(|c| r.category == c))
        .filter(|r| min.is_none_or(|m| r.price_cents >= m))
        .filter(|r| max.is_none_or(|m| r.price_cents <= m))
        .collect()
}

/// Optimal-string-alignment distance (a transposition is one edit): the
/// test's own statement of "a typo", to check the index's automaton against.
fn edits(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

fn pieces(text: &str) -> Vec<String> {
    index::fold(text)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The search definition of `docs/search.md`, stated plainly: each query
/// token must be matched by a name token as typed, by stem, (the last one)
/// as a prefix, or within the allowed typos of its stem; the score is the
/// sum of each token's best way; best first, then by id. `None` when the
/// name does not match.
fn score(name: &str, query: &str) -> Option<f32> {
    let typed: Vec<&str> = query.split_whitespace().collect();
    let mut tokens: Vec<(String, bool)> = Vec::new();
    for (wi, word) in typed.iter().enumerate() {
        let ps = pieces(word);
        let n = ps.len();
        for (pi, p) in ps.into_iter().enumerate() {
            let prefix = wi + 1 == typed.len() && pi + 1 == n;
            match tokens.iter_mut().find(|(t, _)| *t == p) {
                Some(t) => t.1 |= prefix,
                None => tokens.push((p, prefix)),
            }
        }
    }
    if tokens.is_empty() {
        return if typed.is_empty() { Some(0.0) } else { None };
    }
    let name_tokens = pieces(name);
    let mut total = 0.0;
    for (t, prefix) in &tokens {
        let chars = t.chars().count();
        let typos = if t.chars().any(|c| c.is_ascii_digit()) || chars < index::ONE_TYPO_CHARS {
            0
        } else if chars < index::TWO_TYPOS_CHARS {
            1
        } else {
            2
        };
        let best = name_tokens
            .iter()
            .map(|n| {
                if n == t {
                    index::EXACT
                } else if index::stem(n) == index::stem(t) {
                    index::STEM
                } else if *prefix && n.starts_with(t.as_str()) {
                    index::PREFIX
                } else if typos > 0 && edits(&index::stem(n), &index::stem(t)) <= typos {
                    index::FUZZY
                } else {
                    0.0
                }
            })
            .fold(0.0, f32::max);
        if best == 0.0 {
            return None;
        }
        total += best;
    }
    Some(total)
}

/// Every product of the database that matches `query` and the filters, in
/// the index's order for `sort`.
async fn index_reference(
    app: &TestApp,
    query: &str,
    category: Option<&str>,
    min: Option<i64>,
    max: Option<i64>,
    sort: &str,
) -> Vec<Row> {
    let mut scored: Vec<(f32, Row)> = reference(app, &[], category, min, max)
        .await
        .into_iter()
        .filter_map(|r| score(&r.name, query).map(|s| (s, r)))
        .collect();
    match sort {
        "price_asc" => scored.sort_by_key(|(_, r)| (r.price_cents, r.id)),
        "price_desc" => scored.sort_by_key(|(_, r)| (std::cmp::Reverse(r.price_cents), r.id)),
        _ => scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.id.cmp(&b.1.id))),
    }
    scored.into_iter().map(|(_, r)| r).collect()
}

fn rows_of(page: &Value) -> Vec<Row> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| Row {
            id: p["id"].as_i64().expect("id"),
            name: p["name"].as_str().expect("name").to_owned(),
            category: p["category"].as_str().expect("category").to_owned(),
            price_cents: (p["price"].as_f64().expect("price") * 100.0).round() as i64,
        })
        .collect()
}

/// (query string, words, category, min, max, limit, offset)
type Case = (
    &'static str,
    Vec<&'static str>,
    Option<&'static str>,
    Option<i64>,
    Option<i64>,
    usize,
    usize,
);

on_both_backends!(
    search_answers_match_the_definition,
    bad_search_parameters_are_400,
    a_product_is_found_by_id,
    totals_are_exact_up_to_the_bound_then_a_lower_bound,
);

/// `total` is exact up to 10 000 matches (`"totalRelation": "eq"`), then
/// 10 000 with `"gte"`; pages reach down to offset + limit = 10 000.
async fn totals_are_exact_up_to_the_bound_then_a_lower_bound(app: TestApp) {
    const MANY: u64 = 10_050;
    let db = otus_db::connect_plain(&app.database_url)
        .await
        .expect("connect");
    seed::load(
        &db,
        MANY,
        7,
        seed::Shape::Catalog,
        seed::Mode::Replace,
        2000,
        |_, _| {},
    )
    .await
    .expect("seed");
    app.catalog_index_current().await;
    let get = |qs: String| {
        let app = &app;
        async move {
            let resp = app.get(&format!("/products?{qs}"), None).await;
            assert_eq!(resp.status(), 200, "{qs}");
            resp.json::<Value>().await.expect("json")
        }
    };
    // Everything: more than the bound.
    let all = get("limit=1".into()).await;
    assert_eq!(all["total"], 10_000, "{all}");
    assert_eq!(all["totalRelation"], "gte", "{all}");
    // The deepest page is the 10 000th product.
    let ids = reference(&app, &[], None, None, None).await;
    let last = get("offset=9999&limit=1".into()).await;
    assert_eq!(rows_of(&last), ids[9999..10_000], "deepest page");
    // A narrower search: exact, equal to the reference count.
    let category = ids[0].category.clone();
    let expected = reference(&app, &[], Some(&category), None, None).await;
    assert!(expected.len() < 10_000, "a category under the bound");
    let narrow = get(format!("category={category}&limit=1")).await;
    assert_eq!(narrow["total"], expected.len(), "{narrow}");
    assert_eq!(narrow["totalRelation"], "eq", "{narrow}");
}

async fn search_answers_match_a_reference_query(app: TestApp) {
    seeded(&app).await;
    // (query string, words, category, min, max, limit, offset)
    let cases: Vec<Case> = vec![
        ("q=космос", vec!["космос"], None, None, None, 20, 0),
        (
            "q=КОСМОС&limit=100",
            vec!["КОСМОС"],
            None,
            None,
            None,
            100,
            0,
        ),
        (
            "q=космос&offset=20&limit=7",
            vec!["космос"],
            None,
            None,
            None,
            7,
            20,
        ),
        (
            "q=рюкзак%20синий",
            vec!["рюкзак", "синий"],
            None,
            None,
            None,
            20,
            0,
        ),
        (
            "q=синий%20рюкзак&limit=100",
            vec!["синий", "рюкзак"],
            None,
            None,
            None,
            100,
            0,
        ),
        ("q=лёгкая", vec!["лёгкая"], None, None, None, 20, 0),
        (
            "category=Книги&minPrice=500&maxPrice=1000&limit=50",
            vec![],
            Some("Книги"),
            Some(50_000),
            Some(100_000),
            50,
            0,
        ),
        (
            "q=х-1&category=Спорт",
            vec!["х-1"],
            Some("Спорт"),
            None,
            None,
            20,
            0,
        ),
        (
            "q=Космос&minPrice=1000.5",
            vec!["Космос"],
            None,
            Some(100_050),
            None,
            20,
            0,
        ),
        (
            "q=нетакогослова",
            vec!["нетакогослова"],
            None,
            None,
            None,
            20,
            0,
        ),
        // Literal `%` (a LIKE wildcard if it were not escaped).
        ("q=%25%25%25", vec!["%%%"], None, None, None, 20, 0),
        ("offset=2990&limit=100", vec![], None, None, None, 100, 2990),
    ];
    let mut nonempty = 0;
    for (qs, words, category, min, max, limit, offset) in cases {
        let expected = reference(&app, &words, category, min, max).await;
        let resp = app.get(&format!("/products?{qs}"), None).await;
        assert_eq!(resp.status(), 200, "{qs}");
        let page: Value = resp.json().await.expect("json");
        assert_eq!(
            page["total"].as_u64().expect("total") as usize,
            expected.len(),
            "total for {qs}"
        );
        assert_eq!(page["limit"].as_u64(), Some(limit as u64), "{qs}");
        assert_eq!(page["offset"].as_u64(), Some(offset as u64), "{qs}");
        let want: Vec<Row> = expected.into_iter().skip(offset).take(limit).collect();
        nonempty += usize::from(!want.is_empty());
        assert_eq!(rows_of(&page), want, "page for {qs}");
    }
    assert!(
        nonempty >= 8,
        "the data set must exercise the cases ({nonempty} non-empty)"
    );
    // «космос» finds only names with the word, never «Космический».
    let page: Value = app
        .get("/products?q=космос&limit=100", None)
        .await
        .json()
        .await
        .expect("json");
    assert!(
        rows_of(&page)
            .iter()
            .all(|r| fold(&r.name).contains("космос"))
    );
}

/// The index's answers (page, order, total, category counts) equal the
/// definition computed from the database's rows.
async fn search_answers_match_the_definition(app: TestApp) {
    seeded(&app).await;
    // (query string, q, category, min, max, sort, limit, offset)
    type IndexCase<'a> = (
        &'a str,
        &'a str,
        Option<&'a str>,
        Option<i64>,
        Option<i64>,
        &'a str,
        usize,
        usize,
    );
    let cases: Vec<IndexCase> = vec![
        ("q=космос", "космос", None, None, None, "", 20, 0),
        ("q=КОСМОС&limit=100", "КОСМОС", None, None, None, "", 100, 0),
        (
            "q=космос&offset=20&limit=7",
            "космос",
            None,
            None,
            None,
            "",
            7,
            20,
        ),
        (
            "q=рюкзак%20синий&limit=100",
            "рюкзак синий",
            None,
            None,
            None,
            "",
            100,
            0,
        ),
        (
            "q=синие%20рюкзаки&limit=100",
            "синие рюкзаки",
            None,
            None,
            None,
            "",
            100,
            0,
        ),
        ("q=лёгкая&limit=100", "лёгкая", None, None, None, "", 100, 0),
        ("q=рюкзк&limit=100", "рюкзк", None, None, None, "", 100, 0),
        ("q=рюкз&limit=100", "рюкз", None, None, None, "", 100, 0),
        ("q=про-1&limit=100", "про-1", None, None, None, "", 100, 0),
        (
            "q=х-1&category=Спорт",
            "х-1",
            Some("Спорт"),
            None,
            None,
            "",
            20,
            0,
        ),
        (
            "q=Космос&minPrice=1000.5",
            "Космос",
            None,
            Some(100_050),
            None,
            "",
            20,
            0,
        ),
        (
            "q=рюкзак&sort=price_asc&limit=50",
            "рюкзак",
            None,
            None,
            None,
            "price_asc",
            50,
            0,
        ),
        (
            "q=рюкзак&sort=price_desc&limit=50&offset=3",
            "рюкзак",
            None,
            None,
            None,
            "price_desc",
            50,
            3,
        ),
        (
            "q=нетакогослова",
            "нетакогослова",
            None,
            None,
            None,
            "",
            20,
            0,
        ),
        ("q=%25%25%25", "%%%", None, None, None, "", 20, 0),
        (
            "category=Книги&minPrice=500&maxPrice=1000&limit=50",
            "",
            Some("Книги"),
            Some(50_000),
            Some(100_000),
            "",
            50,
            0,
        ),
        (
            "sort=price_desc&limit=30",
            "",
            None,
            None,
            None,
            "price_desc",
            30,
            0,
        ),
        ("offset=2990&limit=100", "", None, None, None, "", 100, 2990),
    ];
    let mut nonempty = 0;
    for (qs, q, category, min, max, sort, limit, offset) in cases {
        let expected = index_reference(&app, q, category, min, max, sort).await;
        let resp = app.get(&format!("/products?{qs}"), None).await;
        assert_eq!(resp.status(), 200, "{qs}");
        let page: Value = resp.json().await.expect("json");
        assert_eq!(
            page["total"].as_u64().expect("total") as usize,
            expected.len(),
            "total for {qs}"
        );
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for r in &expected {
            *counts.entry(r.category.clone()).or_default() += 1;
        }
        let facets: BTreeMap<String, u64> = page["facets"]["category"]
            .as_object()
            .expect("facets")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().expect("count")))
            .collect();
        assert_eq!(facets, counts, "category counts for {qs}");
        assert_eq!(page["limit"].as_u64(), Some(limit as u64), "{qs}");
        assert_eq!(page["offset"].as_u64(), Some(offset as u64), "{qs}");
        let want: Vec<Row> = expected.into_iter().skip(offset).take(limit).collect();
        nonempty += usize::from(!want.is_empty());
        assert_eq!(rows_of(&page), want, "page for {qs}");
    }
    assert!(
        nonempty >= 12,
        "the data set must exercise the cases ({nonempty} non-empty)"
    );
}

async fn bad_search_parameters_are_400(app: TestApp) {
    for (qs, reason) in [
        ("limit=-1", "INVALID_LIMIT"),
        ("limit=0", "INVALID_LIMIT"),
        ("limit=101", "INVALID_LIMIT"),
        ("limit=ten", "INVALID_LIMIT"),
        ("offset=-1", "INVALID_OFFSET"),
        ("offset=10001", "INVALID_OFFSET"),
        ("offset=9991&limit=10", "INVALID_OFFSET"),
        ("q=ab", "QUERY_TOO_SHORT"),
        ("q=a%20bc&category=x", "QUERY_TOO_SHORT"),
        ("minPrice=abc", "INVALID_PRICE"),
        ("maxPrice=-5", "INVALID_PRICE"),
        ("minPrice=500&maxPrice=100", "INVALID_PRICE_RANGE"),
        ("q=a&q=b", "DUPLICATE_PARAMETER"),
        ("sort=price", "INVALID_SORT"),
        ("order=price_asc", "UNKNOWN_PARAMETER"),
        ("q=a-b-c-d-e-f-g-h-i-j-k-l-m-n-o-p-qqq", "INVALID_QUERY"),
        (
            "q=1%202%203%204%205%206%207%208%209%2010%2011",
            "INVALID_QUERY",
        ),
    ] {
        assert_error(app.get(&format!("/products?{qs}"), None).await, 400, reason).await;
    }
    assert_error(app.get("/products/abc", None).await, 400, "INVALID_ID").await;
}

async fn a_product_is_found_by_id(app: TestApp) {
    seeded(&app).await;
    let page: Value = app
        .get("/products?q=космос&limit=1", None)
        .await
        .json()
        .await
        .expect("json");
    let first = &page["items"][0];
    let resp = app.get(&format!("/products/{}", first["id"]), None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(&resp.json::<Value>().await.expect("json"), first);
    assert_error(
        app.get("/products/99999999", None).await,
        404,
        "PRODUCT_NOT_FOUND",
    )
    .await;
}

// The database path (CATALOG_SEARCH_INDEX=false): each word a substring of
// the name, ordered by id; the benchmark baseline.
on_both_backends!(
    options = crate::helpers::Options { search_index: false, ..Default::default() };
    database_search_answers_match_a_reference_query,
    database_totals_are_exact_up_to_the_bound_then_a_lower_bound,
);

async fn database_search_answers_match_a_reference_query(app: TestApp) {
    search_answers_match_a_reference_query(app).await;
}

async fn database_totals_are_exact_up_to_the_bound_then_a_lower_bound(app: TestApp) {
    totals_are_exact_up_to_the_bound_then_a_lower_bound(app).await;
}

on_both_backends!(
    options = crate::helpers::Options { cache_enabled: false, ..Default::default() };
    a_product_changed_in_the_database_is_searchable_soon,
);

/// The index is a second copy of the products: a product inserted, renamed
/// or deleted straight in the database (no service involved, as another
/// writer would) shows in searches within the freshness bound
/// (`docs/search.md`: the poll interval plus one build).
async fn a_product_changed_in_the_database_is_searchable_soon(app: TestApp) {
    seeded(&app).await;
    let db = otus_db::connect_plain(&app.database_url)
        .await
        .expect("connect");
    let ids = reference(&app, &["космос"], None, None, None).await;
    let (renamed, deleted) = (ids[0].id, ids[1].id);
    let sql = |s: &str| Statement::from_string(db.get_database_backend(), s.to_owned());
    let counter = |text: &str, name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}{{outcome=\"ok\"}} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let before = app.metrics().await;
    let changed = std::time::Instant::now();
    db.execute_raw(sql(&format!(
        "UPDATE products SET name = 'Квазарный фонарь', name_search = '{}' WHERE id = {renamed}",
        fold("Квазарный фонарь")
    )))
    .await
    .expect("rename");
    db.execute_raw(sql(&format!("DELETE FROM products WHERE id = {deleted}")))
        .await
        .expect("delete");
    db.execute_raw(sql(&format!(
        "INSERT INTO products (name, name_search, description, category, price_cents) \
         VALUES ('Квазарный зонт', '{}', 'новинка', 'Дом и сад', 12345)",
        fold("Квазарный зонт")
    )))
    .await
    .expect("insert");
    let ids_of = |page: &Value| -> Vec<i64> { rows_of(page).iter().map(|r| r.id).collect() };
    let deadline = changed + Duration::from_secs(30);
    loop {
        let quasar: Value = app
            .get("/products?q=квазарный", None)
            .await
            .json()
            .await
            .expect("json");
        let cosmos: Value = app
            .get("/products?q=космос&limit=100", None)
            .await
            .json()
            .await
            .expect("json");
        let found = ids_of(&quasar);
        if found.len() == 2 {
            assert!(found.contains(&renamed), "{quasar}");
            assert_eq!(quasar["total"], 2, "{quasar}");
            let cosmos_ids = ids_of(&cosmos);
            assert!(!cosmos_ids.contains(&renamed), "the old name is gone");
            assert!(
                !cosmos_ids.contains(&deleted),
                "the deleted product is gone"
            );
            assert_eq!(
                cosmos["total"].as_u64(),
                Some(ids.len() as u64 - 2),
                "{cosmos}"
            );
            if app.search_index {
                // Applied as document updates, not by loading the table again.
                app.catalog_index_current().await;
                let after = app.metrics().await;
                let updates = counter(&after, "catalog_index_updates_total")
                    - counter(&before, "catalog_index_updates_total");
                let builds = counter(&after, "catalog_index_builds_total")
                    - counter(&before, "catalog_index_builds_total");
                assert!(updates >= 1.0, "no incremental update counted");
                assert_eq!(builds, 0.0, "a full build for three changed products");
            }
            println!(
                "changes searchable after {:?} ({})",
                changed.elapsed(),
                if app.search_index {
                    "index"
                } else {
                    "database"
                }
            );
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "changes not searchable after 30 s: {quasar}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

on_both_backends!(a_repeated_search_is_a_cache_hit_with_the_same_bytes);

async fn a_repeated_search_is_a_cache_hit_with_the_same_bytes(app: TestApp) {
    seeded(&app).await;
    let first = app.get("/products?q=космос%20А%20про&limit=5", None).await;
    assert_eq!(first.headers()["x-cache"], "MISS");
    let first = first.bytes().await.expect("body");
    // The order of the words before the last (which is also a prefix) and
    // case do not change the answer, so they hit the same entry.
    let mut hit = None;
    for _ in 0..50 {
        // The answer is stored in the background: allow it a moment.
        let again = app.get("/products?q=а%20КОСМОС%20Про&limit=5", None).await;
        if again.headers()["x-cache"] == "HIT" {
            hit = Some(again.bytes().await.expect("body"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hit = hit.expect("a repeated search becomes a cache hit");
    assert_eq!(hit, first, "byte-identical answers");
    // Errors are never cached.
    for _ in 0..2 {
        let bad = app.get("/products?limit=-1", None).await;
        assert!(bad.headers().get("x-cache").is_none());
    }
}

on_both_backends!(a_search_made_while_products_load_is_not_served_stale_once_the_index_caught_up);

/// The README's Products block pasted in one go: products are seeded into a
/// running system and searched at once, before the index has caught up, so
/// the first answers are computed by an index older than the data (empty at
/// first) and cached. Once the index reflects the data, no such answer may be
/// served: every search answers what the database holds, HIT or MISS. Three
/// rounds, each replacing the catalog with other products.
async fn a_search_made_while_products_load_is_not_served_stale_once_the_index_caught_up(
    app: TestApp,
) {
    const QUERY: &str = "/products?q=космос&limit=5";
    let total_of = |page: &Value| page["total"].as_u64().expect("total");
    let db = otus_db::connect_plain(&app.database_url)
        .await
        .expect("connect");
    for (round, generator_seed) in [7u64, 8, 9].into_iter().enumerate() {
        // An answer of the index as it is now, before the load, in the cache.
        app.catalog_index_current().await;
        let before = total_of(&app.get(QUERY, None).await.json().await.expect("json"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while app.get(QUERY, None).await.headers()["x-cache"] != "HIT" {
            assert!(Instant::now() < deadline, "the answer was never cached");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Load, searching all the while (as a user would, at once).
        let load = seed::load(
            &db,
            COUNT / 3,
            generator_seed,
            seed::Shape::Catalog,
            seed::Mode::Replace,
            200,
            |_, _| {},
        );
        let searching = async {
            let mut seen = 0;
            loop {
                let _ = app.get(QUERY, None).await;
                seen += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
                if seen > 10_000 {
                    break;
                }
            }
        };
        tokio::select! {
            report = load => assert_eq!(report.expect("seed").inserted, COUNT / 3),
            () = searching => panic!("round {round}: the load outlasted 10 000 searches"),
        }
        let want = reference(&app, &["космос"], None, None, None).await.len() as u64;
        assert_ne!(
            want, before,
            "round {round}: the data must change the answer"
        );
        app.catalog_index_current().await;
        // Now every answer is the data's, cached or not.
        let mut hits = 0;
        for attempt in 0..20 {
            let answer = app.get(QUERY, None).await;
            let cache = answer.headers()["x-cache"]
                .to_str()
                .expect("ascii")
                .to_owned();
            let page: Value = answer.json().await.expect("json");
            assert_eq!(
                total_of(&page),
                want,
                "round {round}, search {attempt} after the index caught up: {cache} answer of an older index: {page}"
            );
            hits += usize::from(cache == "HIT");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(hits > 0, "round {round}: the fresh answer is cached too");
    }
}

#[tokio::test]
async fn with_the_cache_off_nothing_is_cached_and_answers_are_identical() {
    let on = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let off = TestApp::spawn_with(
        Backend::Sqlite,
        Options {
            cache_enabled: false,
            ..Default::default()
        },
    )
    .await
    .expect("sqlite");
    seeded(&on).await;
    seeded(&off).await;
    for _ in 0..3 {
        let resp = off.get("/products?q=космос", None).await;
        assert!(
            resp.headers().get("x-cache").is_none(),
            "cache off: no X-Cache"
        );
    }
    let from_off = off
        .get("/products?q=космос", None)
        .await
        .bytes()
        .await
        .expect("body");
    let from_on = on
        .get("/products?q=космос", None)
        .await
        .bytes()
        .await
        .expect("body");
    assert_eq!(from_on, from_off);
    let metrics = off.metrics().await;
    assert!(
        !metrics.contains("catalog_search_cache_requests_total{"),
        "no cache lookups with the cache off"
    );
}

/// Kills a private redis-server in the middle of a run: searches keep
/// answering correctly, within the cache timeout: from the near copy of the
/// index's answers, or computed again.
#[tokio::test]
#[cfg_attr(
    not(otus_redis_server),
    ignore = "redis-server is not on PATH (Debian package redis-server): cannot start and kill one"
)]
async fn searches_keep_answering_when_redis_dies() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut redis = tokio::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start redis-server");
    let url = format!("redis://127.0.0.1:{port}/0");
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "redis-server did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        Options {
            redis_url: Some(url),
            ..Default::default()
        },
    )
    .await
    .expect("sqlite + private redis");
    seeded(&app).await;

    let reference = app
        .get("/products?q=космос", None)
        .await
        .bytes()
        .await
        .expect("body");
    let mut hits = 0;
    for _ in 0..20 {
        let r = app.get("/products?q=космос", None).await;
        hits += usize::from(r.headers()["x-cache"] == "HIT");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(hits > 0, "the answer was cached while Redis was up");

    redis.kill().await.expect("kill redis");
    let _ = redis.wait().await;
    let bounded = |t: Instant| {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "bounded by the cache timeout: {:?}",
            t.elapsed()
        );
    };
    // The repeated search: an answer of the index lasts (its key names the
    // index version), so this process's near copy serves it without Redis.
    let mut by_cache: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..10 {
        let t = Instant::now();
        let r = app.get("/products?q=космос", None).await;
        assert_eq!(r.status(), 200);
        *by_cache
            .entry(r.headers()["x-cache"].to_str().unwrap_or("?").to_owned())
            .or_default() += 1;
        assert_eq!(
            r.bytes().await.expect("body"),
            reference,
            "same answer without Redis"
        );
        bounded(t);
    }
    assert_eq!(
        by_cache.get("HIT"),
        Some(&10),
        "the near copy answers the repeated search: {by_cache:?}"
    );
    // A search never made before: computed (Redis's error counted as a
    // miss), then kept near, so it too is answered without Redis.
    let unseen = "/products?q=космос&limit=3";
    let t = Instant::now();
    let first = app.get(unseen, None).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-cache"], "MISS");
    let first = first.bytes().await.expect("body");
    bounded(t);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = Instant::now();
        let r = app.get(unseen, None).await;
        assert_eq!(r.status(), 200);
        let hit = r.headers()["x-cache"] == "HIT";
        assert_eq!(r.bytes().await.expect("body"), first, "same answer");
        bounded(t);
        if hit {
            break;
        }
        assert!(Instant::now() < deadline, "never kept near");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"catalog_search_cache_requests_total{result="error"}"#),
        "errors are counted"
    );
    let near_hits = metrics
        .lines()
        .find_map(|l| l.strip_prefix("catalog_search_cache_near_hits_total "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert!(
        near_hits.is_some_and(|n| n >= 11.0),
        "near hits counted: {near_hits:?}"
    );
    for series in [
        r#"cache_operation_duration_seconds_count{operation="get",outcome="ok"}"#,
        r#"cache_operation_duration_seconds_count{operation="get",outcome="error"}"#,
        r#"cache_operation_duration_seconds_count{operation="set",outcome="ok"}"#,
    ] {
        assert!(metrics.contains(series), "missing {series}");
    }
}
