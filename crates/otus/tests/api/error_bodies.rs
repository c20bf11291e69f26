//! One error answer per reason, snapshotted: the exact status, JSON body and
//! the headers a client acts on (`WWW-Authenticate`, `Retry-After`).
//!
//! The same snapshot serves both backends, so SQLite and PostgreSQL(+Redis)
//! must answer alike, and any change of a public error body shows up as a
//! snapshot diff (`cargo insta review`) rather than passing unnoticed.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{BODY_LIMIT, MAX_FAILURES, TestApp, new_user, on_both_backends};

/// What a client sees of one error answer.
async fn seen(case: &str, resp: reqwest::Response) -> Value {
    let status = resp.status().as_u16();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header("content-type");
    let www_authenticate = header("www-authenticate");
    // The seconds left in the window depend on the clock; that the header
    // is there is what a client relies on.
    let retry_after = header("retry-after").map(|v| {
        assert!(
            v.parse::<u64>().is_ok_and(|s| s >= 1),
            "{case}: Retry-After {v:?}"
        );
        "<seconds>"
    });
    let mut body: Value = resp.json().await.expect("error bodies are JSON");
    assert_eq!(body["code"], status, "{case}: code equals the status");
    if body["reason"] == "TOO_MANY_ATTEMPTS" {
        // "try again in 299 s": the same clock-dependent count.
        let message = body["message"].as_str().unwrap_or_default();
        let message: String = message
            .split(' ')
            .map(|w| {
                if w.parse::<u64>().is_ok() {
                    "<seconds>"
                } else {
                    w
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        body["message"] = message.into();
    }
    let mut out =
        json!({ "case": case, "status": status, "contentType": content_type, "body": body });
    if let Some(v) = www_authenticate {
        out["wwwAuthenticate"] = v.into();
    }
    if let Some(v) = retry_after {
        out["retryAfter"] = v.into();
    }
    out
}

/// `user` with `field` set to `value`.
fn with(field: &str, value: Value) -> Value {
    let mut u = new_user();
    u[field] = value;
    u
}

async fn every_reason_has_one_stable_body(app: TestApp) {
    let mut answers = Vec::new();
    macro_rules! case {
        ($name:expr, $resp:expr) => {
            answers.push(seen($name, $resp).await)
        };
    }
    let raw = async |method: Method, path: &str, body: &str| {
        app.send(method, path, None, Some(body.to_owned())).await
    };

    // Routing and credentials.
    case!("unknown route", app.get("/nope", None).await);
    case!(
        "method not allowed",
        app.send(Method::PATCH, "/user/1", None, None).await
    );
    case!("no credentials", app.get("/me", None).await);
    case!(
        "unknown session",
        app.get("/me", Some("not-a-session")).await
    );
    case!(
        "two Authorization headers",
        app.client
            .get(format!("{}/me", app.base))
            .header("authorization", "Bearer one")
            .header("authorization", "Bearer two")
            .send()
            .await
            .expect("request")
    );

    // Request bodies.
    case!(
        "not JSON",
        app.client
            .post(format!("{}/user", app.base))
            .header("content-type", "text/plain")
            .body("hello")
            .send()
            .await
            .expect("request")
    );
    case!("empty body", raw(Method::POST, "/user", "").await);
    case!(
        "malformed JSON",
        raw(Method::POST, "/user", "{\"username\":").await
    );
    case!("not an object", raw(Method::POST, "/user", "[1, 2]").await);
    case!(
        "repeated field",
        raw(Method::POST, "/user", r#"{"username":"a","username":"b"}"#).await
    );
    case!(
        "unknown field",
        app.post_json("/user", None, &with("nickname", json!("ada")))
            .await
    );
    case!(
        "read-only field",
        app.post_json("/user", None, &with("id", json!(7))).await
    );
    case!(
        "wrong field type",
        app.post_json("/user", None, &with("phone", json!(79_123_456_789_i64)))
            .await
    );
    case!(
        "body over the limit",
        raw(
            Method::POST,
            "/user",
            &format!(r#"{{"username":"{}"}}"#, "a".repeat(BODY_LIMIT))
        )
        .await
    );

    // Profile and password rules (the users and auth services decide).
    for (name, field, value) in [
        ("empty username", "username", json!("")),
        (
            "username over 256 characters",
            "username",
            json!("u".repeat(257)),
        ),
        (
            "first name with a control character",
            "firstName",
            json!("Ada\u{7}"),
        ),
        (
            "last name over 256 characters",
            "lastName",
            json!("L".repeat(257)),
        ),
        ("bad email", "email", json!("ada-at-example")),
        ("bad phone", "phone", json!("call me")),
        ("short password", "password", json!("short")),
    ] {
        case!(
            name,
            app.post_json("/user", None, &with(field, value)).await
        );
    }
    let ada = app.register(json!({"username": "ada"})).await;
    case!(
        "username taken (another spelling)",
        app.post_json("/user", None, &with("username", json!("ADA")))
            .await
    );

    // Login.
    case!(
        "login without a password",
        app.post_json("/login", None, &json!({"username": "ada"}))
            .await
    );
    case!(
        "wrong password",
        app.post_json(
            "/login",
            None,
            &json!({"username": "ada", "password": "not the password"})
        )
        .await
    );
    let token = app.login(&ada).await;
    let grace = app.register(json!({"username": "grace"})).await;
    for _ in 0..MAX_FAILURES {
        app.post_json(
            "/login",
            None,
            &json!({"username": "grace", "password": "wrong password"}),
        )
        .await;
    }
    case!(
        "too many failed logins",
        app.post_json(
            "/login",
            None,
            &json!({"username": "grace", "password": grace.password})
        )
        .await
    );

    // Profiles: owner only.
    case!(
        "someone else's profile",
        app.get(&format!("/user/{}", grace.id), Some(&token)).await
    );
    case!(
        "id that is not a number",
        app.get("/user/abc", Some(&token)).await
    );
    case!(
        "update with another id",
        app.put_json("/me", Some(&token), &json!({"id": ada.id + 1000}))
            .await
    );
    case!(
        "delete someone else's account",
        app.delete(&format!("/user/{}", grace.id), Some(&token))
            .await
    );

    // Catalog (public).
    for (name, query) in [
        ("unknown search parameter", "order=name"),
        ("unknown sort order", "sort=name"),
        (
            "query of seventeen pieces",
            "q=a-b-c-d-e-f-g-h-i-j-k-l-m-n-o-p-qqq",
        ),
        ("repeated search parameter", "q=cat&q=dog"),
        ("price that is not a number", "minPrice=cheap"),
        ("minimum price above the maximum", "minPrice=10&maxPrice=1"),
        ("limit over 100", "limit=101"),
        ("limit zero", "limit=0"),
        ("negative offset", "offset=-1"),
        ("offset past the window", "offset=9990&limit=20"),
        ("query of short words only", "q=ab%20c"),
        (
            "query of eleven words",
            "q=a1a%20b2b%20c3c%20d4d%20e5e%20f6f%20g7g%20h8h%20i9i%20j0j%20k1k",
        ),
        ("query with a control character", "q=cat%01"),
        ("category with a control character", "category=toys%01"),
        ("query that is not UTF-8", "q=%FFabc"),
        ("price finer than a kopeck", "minPrice=9800.901"),
    ] {
        case!(name, app.get(&format!("/products?{query}"), None).await);
    }
    case!(
        "unknown product",
        app.get("/products/999999999", None).await
    );
    case!(
        "product id that is not a number",
        app.get("/products/x", None).await
    );

    insta::assert_json_snapshot!("error_bodies", answers);
}

on_both_backends!(every_reason_has_one_stable_body);
