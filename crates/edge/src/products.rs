//! `/products` routes: public product search and lookup, mapped onto
//! `otus.catalog.v1.CatalogService`. The catalog owns the search rules
//! (ranges, defaults, the result window) and their 400s; the edge only parses
//! the query string into the request's types (unknown, repeated or
//! unparsable parameters are 400 here) and copies `X-Cache` from the answer.

use axum::{
    Json, Router,
    extract::{RawQuery, State},
    http::{HeaderMap, HeaderValue},
    response::{IntoResponse, Response},
    routing::get,
};
use otus_proto::catalog::{
    CACHE_HEADER,
    v1::{GetProductRequest, Product, SearchProductsRequest, SearchSort, TotalRelation},
};
use serde::Serialize;

use otus_grpc::client::read_retried_once;

use crate::{body::PathId, error::ApiError, observe, state::AppState};

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/products", get(search))
        .route("/products/{id}", get(product))
        // The catalog is the same for every caller: its answers may be
        // kept by shared caches (no `Cache-Control: no-store`).
        .route_layer(axum::middleware::map_response(observe::shareable))
}

/// The REST `Product`.
#[derive(Serialize)]
struct ProductJson {
    id: i64,
    name: String,
    description: String,
    category: String,
    /// Roubles with kopecks (stored exactly as kopecks).
    price: f64,
}

impl From<Product> for ProductJson {
    fn from(p: Product) -> Self {
        Self {
            id: p.id,
            name: p.name,
            description: p.description,
            category: p.category,
            // Prices are far below 2^53 kopecks: exact in an f64.
            price: p.price_cents as f64 / 100.0,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PageJson {
    items: Vec<ProductJson>,
    total: i64,
    /// `"eq"`: `total` is exact; `"gte"`: there are at least `total`.
    total_relation: &'static str,
    /// Matches per category: `{"category": {"Книги": 12, ...}}`.
    facets: FacetsJson,
    limit: i32,
    offset: i32,
}

#[derive(Serialize)]
struct FacetsJson {
    /// Category name → matches (a JSON object: its key order means nothing).
    category: serde_json::Map<String, serde_json::Value>,
}

const PARAMS: &[&str] = &[
    "q", "category", "minPrice", "maxPrice", "sort", "limit", "offset",
];

/// The `sort` values.
const SORTS: &[(&str, SearchSort)] = &[
    ("relevance", SearchSort::Relevance),
    ("price_asc", SearchSort::PriceAsc),
    ("price_desc", SearchSort::PriceDesc),
];

fn bad(reason: &str, message: String) -> ApiError {
    ApiError::bad_request(reason, message)
}

/// Largest price in roubles that converts to kopecks exactly (an f64 holds
/// every integer below 2^53; this keeps far below). A representation limit,
/// not a rule: the catalog decides which prices a search may name.
const MAX_PRICE_ROUBLES: f64 = 1e12;

/// A price in roubles ("199.90") as kopecks. Prices are whole kopecks, so a
/// finer one (`9800.901`) is refused, not rounded or cut: no product could
/// be priced so, and a silent change would answer another question.
fn price(name: &str, raw: &str) -> Result<i64, ApiError> {
    match raw.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v.abs() <= MAX_PRICE_ROUBLES => {
            let kopecks = v * 100.0;
            if (kopecks - kopecks.round()).abs() > 1e-6 {
                return Err(bad(
                    "INVALID_PRICE",
                    format!("{name} has a fraction of a kopeck ({raw:?}); at most 2 decimals"),
                ));
            }
            Ok(kopecks.round() as i64)
        }
        _ => Err(bad(
            "INVALID_PRICE",
            format!("{name} must be a non-negative number, got {raw:?}"),
        )),
    }
}

/// The query string's `name=value` pairs, decoded strictly: `+` is a space
/// (as HTML forms send it), every `%` starts two hex digits, and the decoded
/// bytes are UTF-8. Anything else is a 400 naming the parameter, never a
/// guess (a lenient decoder turns `%FF` into U+FFFD and `%zz` into itself,
/// and so answers, and caches, a search nobody asked for). Empty pairs
/// (`a=1&&b=2`) are skipped.
fn query_pairs(raw: &str) -> Result<Vec<(String, String)>, ApiError> {
    let mut pairs = Vec::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key_text = decode(key).ok_or_else(|| {
            bad(
                "INVALID_ENCODING",
                format!("a parameter name ({key:?}) is not valid percent-encoded UTF-8"),
            )
        })?;
        let value = decode(value).ok_or_else(|| {
            bad(
                "INVALID_ENCODING",
                format!("the value of {key_text:?} is not valid percent-encoded UTF-8"),
            )
        })?;
        pairs.push((key_text, value));
    }
    Ok(pairs)
}

/// One percent-encoded component, or `None` if it is malformed.
fn decode(part: &str) -> Option<String> {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// An `int32` parameter; its range is the catalog's to check.
fn int(name: &str, raw: &str, reason: &str) -> Result<i32, ApiError> {
    raw.trim()
        .parse::<i32>()
        .map_err(|_| bad(reason, format!("{name} must be an integer, got {raw:?}")))
}

/// The query string as a search request.
fn parse(params: Vec<(String, String)>) -> Result<SearchProductsRequest, ApiError> {
    let mut req = SearchProductsRequest::default();
    let mut seen: Vec<&str> = Vec::new();
    for (key, value) in &params {
        let Some(&name) = PARAMS.iter().find(|p| **p == key) else {
            return Err(bad(
                "UNKNOWN_PARAMETER",
                format!(
                    "unknown parameter {key:?}; expected any of {}",
                    PARAMS.join(", ")
                ),
            ));
        };
        if seen.contains(&name) {
            return Err(bad(
                "DUPLICATE_PARAMETER",
                format!("{name} given more than once"),
            ));
        }
        seen.push(name);
        match name {
            "q" => req.query.clone_from(value),
            "category" => req.category.clone_from(value),
            "minPrice" => req.min_price_cents = Some(price(name, value)?),
            "maxPrice" => req.max_price_cents = Some(price(name, value)?),
            "sort" => {
                let Some((_, sort)) = SORTS.iter().find(|(n, _)| n == value) else {
                    return Err(bad(
                        "INVALID_SORT",
                        format!(
                            "sort must be one of {}, got {value:?}",
                            SORTS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                        ),
                    ));
                };
                req.sort = (*sort).into();
            }
            "limit" => req.limit = Some(int(name, value, "INVALID_LIMIT")?),
            "offset" => req.offset = int(name, value, "INVALID_OFFSET")?,
            // `name` is one of PARAMS, each handled above.
            other => {
                return Err(bad(
                    "UNKNOWN_PARAMETER",
                    format!("unknown parameter {other:?}"),
                ));
            }
        }
    }
    Ok(req)
}

/// `GET /products?q=&category=&minPrice=&maxPrice=&sort=&limit=&offset=`.
async fn search(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let search = parse(query_pairs(query.as_deref().unwrap_or(""))?)?;
    let resp = read_retried_once(|| {
        let req = state.rpc(&headers, search.clone());
        let mut client = state.catalog.clone();
        async move { client.search_products(req).await }
    })
    .await?;
    let cache = resp
        .metadata()
        .get(CACHE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let page = resp.into_inner();
    let total_relation = match page.total_relation() {
        TotalRelation::Gte => "gte",
        TotalRelation::Eq | TotalRelation::Unspecified => "eq",
    };
    let mut out = Json(PageJson {
        items: page.products.into_iter().map(Into::into).collect(),
        total: page.total,
        total_relation,
        facets: FacetsJson {
            category: page
                .categories
                .into_iter()
                .map(|c| (c.name, c.count.into()))
                .collect(),
        },
        limit: page.limit,
        offset: page.offset,
    })
    .into_response();
    if let Some(v) = cache.and_then(|v| HeaderValue::from_str(&v).ok()) {
        out.headers_mut().insert(CACHE_HEADER, v);
    }
    Ok(out)
}

/// `GET /products/{id}`.
async fn product(
    State(state): State<AppState>,
    headers: HeaderMap,
    PathId(id): PathId,
) -> Result<Json<ProductJson>, ApiError> {
    let product = read_retried_once(|| {
        let req = state.rpc(&headers, GetProductRequest { id });
        let mut client = state.catalog.clone();
        async move { client.get_product(req).await }
    })
    .await?;
    Ok(Json(product.into_inner().into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Result<SearchProductsRequest, String> {
        parse(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .map_err(|e| e.reason().to_owned())
    }

    #[test]
    fn query_parameters_are_parsed_strictly() {
        let ok = p(&[
            ("q", "космос"),
            ("minPrice", "10.5"),
            ("maxPrice", "99"),
            ("limit", "5"),
        ])
        .unwrap();
        assert_eq!(ok.min_price_cents, Some(1050));
        assert_eq!(ok.max_price_cents, Some(9900));
        assert_eq!(ok.limit, Some(5));
        assert_eq!(p(&[]).unwrap().limit, None, "the catalog's default");
        // Ranges are the catalog's: the edge forwards what parses.
        assert_eq!(p(&[("limit", "0")]).unwrap().limit, Some(0));
        assert_eq!(p(&[("offset", "-3")]).unwrap().offset, -3);
        assert_eq!(
            p(&[("minPrice", "-1")]).unwrap().min_price_cents,
            Some(-100)
        );
        assert_eq!(p(&[("limit", "ten")]).unwrap_err(), "INVALID_LIMIT");
        assert_eq!(p(&[("limit", "99999999999")]).unwrap_err(), "INVALID_LIMIT");
        assert_eq!(p(&[("offset", "1.5")]).unwrap_err(), "INVALID_OFFSET");
        assert_eq!(p(&[("minPrice", "abc")]).unwrap_err(), "INVALID_PRICE");
        assert_eq!(p(&[("maxPrice", "NaN")]).unwrap_err(), "INVALID_PRICE");
        assert_eq!(p(&[("maxPrice", "1e300")]).unwrap_err(), "INVALID_PRICE");
        assert_eq!(p(&[("order", "name")]).unwrap_err(), "UNKNOWN_PARAMETER");
        assert_eq!(p(&[("sort", "name")]).unwrap_err(), "INVALID_SORT");
        assert_eq!(p(&[("sort", "Price_asc")]).unwrap_err(), "INVALID_SORT");
        assert_eq!(
            p(&[("sort", "price_desc")]).unwrap().sort(),
            SearchSort::PriceDesc
        );
        assert_eq!(
            p(&[("sort", "relevance")]).unwrap().sort(),
            SearchSort::Relevance
        );
        assert_eq!(
            p(&[("q", "a"), ("q", "b")]).unwrap_err(),
            "DUPLICATE_PARAMETER"
        );
        // Whole kopecks only; trailing zeros and float noise are fine.
        assert_eq!(p(&[("minPrice", "9800.901")]).unwrap_err(), "INVALID_PRICE");
        assert_eq!(p(&[("minPrice", "0.001")]).unwrap_err(), "INVALID_PRICE");
        assert_eq!(
            p(&[("minPrice", "9800.900")]).unwrap().min_price_cents,
            Some(980_090)
        );
        assert_eq!(
            p(&[("maxPrice", "0.29")]).unwrap().max_price_cents,
            Some(29)
        );
    }

    #[test]
    fn malformed_percent_encoding_or_utf8_is_refused_not_guessed() {
        let reason = |raw: &str| query_pairs(raw).map_err(|e| e.reason().to_owned());
        for raw in [
            "q=%FFabc",
            "q=%zz",
            "q=abc%",
            "q=abc%4",
            "category=%FF",
            "%FF=1",
            "q=%C3%28",
        ] {
            assert_eq!(reason(raw).unwrap_err(), "INVALID_ENCODING", "{raw}");
        }
        assert_eq!(
            reason("q=%D1%87%D0%B0%D0%B9+%D0%B7%D0%B5%D0%BB%D1%91%D0%BD%D1%8B%D0%B9&&limit=5")
                .unwrap(),
            vec![
                ("q".to_owned(), "чай зелёный".to_owned()),
                ("limit".to_owned(), "5".to_owned())
            ]
        );
        assert_eq!(
            reason("q=a%2Bb%25").unwrap(),
            vec![("q".to_owned(), "a+b%".to_owned())]
        );
        assert_eq!(reason("").unwrap(), vec![]);
    }
}
