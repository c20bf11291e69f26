//! `/products` routes: public product search and lookup, mapped onto
//! `otus.catalog.v1.CatalogService`. The service validates and normalises the
//! search; the edge parses the query string strictly (unknown, repeated or
//! malformed parameters are 400) and copies `X-Cache` from the answer.

use axum::{
    Json, Router,
    extract::{Query, State, rejection::QueryRejection},
    http::{HeaderMap, HeaderValue},
    response::{IntoResponse, Response},
    routing::get,
};
use otus_proto::catalog::v1::{GetProductRequest, Product, SearchProductsRequest, TotalRelation};
use serde::Serialize;

use crate::{
    AppState,
    body::PathId,
    error::{ApiError, read_retried_once},
};

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/products", get(search))
        .route("/products/{id}", get(product))
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
    limit: i32,
    offset: i32,
}

const PARAMS: &[&str] = &["q", "category", "minPrice", "maxPrice", "limit", "offset"];

fn bad(reason: &str, message: String) -> ApiError {
    ApiError::bad_request(reason, message)
}

/// A price in roubles ("199.90") as kopecks.
fn price(name: &str, raw: &str) -> Result<i64, ApiError> {
    match raw.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=1e12).contains(&v) => Ok((v * 100.0).round() as i64),
        _ => Err(bad(
            "INVALID_PRICE",
            format!("{name} must be a non-negative number, got {raw:?}"),
        )),
    }
}

fn int(
    name: &str,
    raw: &str,
    range: std::ops::RangeInclusive<i32>,
    reason: &str,
) -> Result<i32, ApiError> {
    match raw.trim().parse::<i32>() {
        Ok(v) if range.contains(&v) => Ok(v),
        _ => Err(bad(
            reason,
            format!(
                "{name} must be an integer from {} to {}, got {raw:?}",
                range.start(),
                range.end()
            ),
        )),
    }
}

/// The query string as a search request.
fn parse(params: Vec<(String, String)>) -> Result<SearchProductsRequest, ApiError> {
    let mut req = SearchProductsRequest {
        limit: 20,
        ..Default::default()
    };
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
            "limit" => req.limit = int(name, value, 1..=100, "INVALID_LIMIT")?,
            // The catalog checks offset + limit against its window.
            _ => req.offset = int(name, value, 0..=9_999, "INVALID_OFFSET")?,
        }
    }
    Ok(req)
}

/// `GET /products?q=&category=&minPrice=&maxPrice=&limit=&offset=`.
async fn search(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = query.map_err(|e| bad("INVALID_QUERY_STRING", e.body_text()))?;
    let search = parse(params)?;
    let resp = read_retried_once(|| {
        let req = state.rpc(&headers, search.clone());
        let mut client = state.catalog.clone();
        async move { client.search_products(req).await }
    })
    .await?;
    let cache = resp
        .metadata()
        .get("x-cache")
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
        limit: page.limit,
        offset: page.offset,
    })
    .into_response();
    if let Some(v) = cache.and_then(|v| HeaderValue::from_str(&v).ok()) {
        out.headers_mut().insert("x-cache", v);
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
        assert_eq!(ok.limit, 5);
        assert_eq!(p(&[]).unwrap().limit, 20, "default limit");
        assert_eq!(p(&[("limit", "-1")]).unwrap_err(), "INVALID_LIMIT");
        assert_eq!(p(&[("limit", "0")]).unwrap_err(), "INVALID_LIMIT");
        assert_eq!(p(&[("limit", "101")]).unwrap_err(), "INVALID_LIMIT");
        assert_eq!(p(&[("offset", "-3")]).unwrap_err(), "INVALID_OFFSET");
        assert_eq!(p(&[("minPrice", "abc")]).unwrap_err(), "INVALID_PRICE");
        assert_eq!(p(&[("minPrice", "-1")]).unwrap_err(), "INVALID_PRICE");
        assert_eq!(p(&[("maxPrice", "NaN")]).unwrap_err(), "INVALID_PRICE");
        assert_eq!(p(&[("sort", "name")]).unwrap_err(), "UNKNOWN_PARAMETER");
        assert_eq!(
            p(&[("q", "a"), ("q", "b")]).unwrap_err(),
            "DUPLICATE_PARAMETER"
        );
    }
}
