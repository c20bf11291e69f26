//! Hostile input: what a client sends must never cost a 5xx, and what a
//! database cannot store is a 400 on every backend.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    BODY_LIMIT, BODY_READ_TIMEOUT, Backend, Options, TestApp, new_user, on_both_backends,
};

/// Characters some backend cannot store or treats specially: NUL
/// (PostgreSQL refuses it in text, SQLite cuts strings at it), and C0/C1
/// controls that no field accepts.
const REFUSED: [&str; 4] = ["a\u{0}b", "\u{0}", "a\u{1b}b", "a\u{85}b"];

async fn assert_400(resp: reqwest::Response, what: &str) -> Value {
    let status = resp.status().as_u16();
    let body: Value = resp
        .json()
        .await
        .unwrap_or_else(|e| panic!("{what}: answer is not JSON ({status}): {e}"));
    assert_eq!(status, 400, "{what}: {body}");
    assert_eq!(body["code"], 400, "{what}: {body}");
    assert!(
        body["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{what}: {body}"
    );
    body
}

on_both_backends!(input_a_database_cannot_store_is_a_400_everywhere);

async fn input_a_database_cannot_store_is_a_400_everywhere(app: TestApp) {
    let (user, token) = app.user_with_token().await;
    let before = app.get("/me", Some(&token)).await.text().await.expect("me");
    let fields = [
        "username",
        "firstName",
        "lastName",
        "email",
        "phone",
        "password",
    ];
    for bad in REFUSED {
        for field in fields {
            if field == "password" && !bad.contains('\u{0}') {
                // Other controls are allowed in passwords (never stored).
                continue;
            }
            for path in ["/register", "/user"] {
                let mut body = new_user();
                body[field] = if field == "password" {
                    json!(format!("long enough password {bad}"))
                } else {
                    json!(bad)
                };
                let what = format!("POST {path} with {field}={bad:?}");
                assert_400(app.post_json(path, None, &body).await, &what).await;
            }
            if field != "password" {
                let what = format!("PUT /me with {field}={bad:?}");
                let resp = app
                    .put_json("/me", Some(&token), &json!({ field: bad }))
                    .await;
                assert_400(resp, &what).await;
                let what = format!("PUT /user/{{id}} with {field}={bad:?}");
                let resp = app
                    .put_json(
                        &format!("/user/{}", user.id),
                        Some(&token),
                        &json!({ field: bad }),
                    )
                    .await;
                assert_400(resp, &what).await;
            }
        }
        let login = json!({"username": bad, "password": "whatever long"});
        assert_400(
            app.post_json("/login", None, &login).await,
            &format!("login username {bad:?}"),
        )
        .await;
        let login =
            json!({"username": user.username, "password": format!("{}{bad}", user.password)});
        let what = format!("login password with {bad:?}");
        let resp = app.post_json("/login", None, &login).await;
        if bad.contains('\u{0}') {
            assert_400(resp, &what).await;
        } else {
            // Other controls are only wrong passwords: no stored one has them.
            assert_eq!(resp.status(), 401, "{what}");
        }
    }
    // Search parameters, percent-encoded as a browser would send them.
    for query in [
        "q=%00",
        "q=%00qqqq",
        "q=%D0%BA%D0%BE%D1%81%00",
        "q=a%1Bb",
        "q=a%C2%85b",
        "category=%00",
        "category=%D0%A2%D1%83%D1%80%D0%B8%D0%B7%D0%BC%00",
    ] {
        let resp = app.get(&format!("/products?{query}"), None).await;
        assert_400(resp, &format!("GET /products?{query}")).await;
    }
    // A lone surrogate is not a character at all: malformed JSON.
    let raw = r#"{"username":"a\ud800b","email":"x@example.com","password":"long enough"}"#;
    let resp = app
        .send(Method::POST, "/register", None, Some(raw.into()))
        .await;
    assert_400(resp, "lone surrogate in JSON").await;

    // Nothing was changed or lost by any of it, and the session still works.
    let after = app.get("/me", Some(&token)).await.text().await.expect("me");
    assert_eq!(before, after, "the profile is unchanged");
    app.login(&user).await;
}

/// Sends `raw` on a new connection to the edge and returns everything the
/// server writes until it closes the connection (bounded by `deadline`).
async fn raw_exchange(app: &TestApp, raw: &[u8], deadline: Duration) -> (String, Duration) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let started = Instant::now();
    stream.write_all(raw).await.expect("send");
    let mut out = Vec::new();
    let read = tokio::time::timeout(deadline, stream.read_to_end(&mut out)).await;
    assert!(
        read.is_ok(),
        "the server kept the connection open for {deadline:?}; got so far: {:?}",
        String::from_utf8_lossy(&out)
    );
    (
        String::from_utf8_lossy(&out).into_owned(),
        started.elapsed(),
    )
}

fn status_and_body(response: &str) -> (u16, Value) {
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"));
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    let body =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("body not JSON ({e}): {response:?}"));
    (status, body)
}

#[tokio::test]
async fn a_declared_oversized_body_is_413_without_waiting_for_it() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    for expect in ["", "Expect: 100-continue\r\n"] {
        let raw = format!(
            "POST /register HTTP/1.1\r\nHost: arch.homework\r\nContent-Type: application/json\r\n\
             Content-Length: 10000000\r\n{expect}\r\n"
        );
        // The body never comes: only an answer that does not wait for it is
        // 413 (waiting would end in the body timeout's 408).
        let (response, _) = raw_exchange(&app, raw.as_bytes(), Duration::from_secs(20)).await;
        assert!(!response.contains("100 Continue"), "{response}");
        let (status, body) = status_and_body(&response);
        assert_eq!(status, 413, "{expect:?}: {response}");
        assert_eq!(body["reason"], "PAYLOAD_TOO_LARGE");
    }
}

/// A body that grows past the limit without declaring its length (chunked)
/// gets the same 413 as a declared one, naming the limit: one owner of the
/// limit and of its answer.
#[tokio::test]
async fn an_undeclared_body_over_the_limit_is_the_same_413() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let chunk = "x".repeat(4096);
    let mut raw =
        "POST /register HTTP/1.1\r\nHost: arch.homework\r\nContent-Type: application/json\r\n\
                   Transfer-Encoding: chunked\r\n\r\n"
            .to_owned();
    for _ in 0..=(BODY_LIMIT / chunk.len()) {
        raw.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    raw.push_str("0\r\n\r\n");
    let (response, _) = raw_exchange(&app, raw.as_bytes(), Duration::from_secs(20)).await;
    let (status, body) = status_and_body(&response);
    assert_eq!(status, 413, "{response}");
    assert_eq!(body["reason"], "PAYLOAD_TOO_LARGE");
    assert_eq!(
        body["message"],
        format!("request body is larger than the limit of {BODY_LIMIT} bytes")
    );
}

#[tokio::test]
async fn a_stalled_body_is_408_json_within_the_body_timeout() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let raw = "POST /login HTTP/1.1\r\nHost: arch.homework\r\nContent-Type: application/json\r\n\
               Content-Length: 100\r\n\r\n{\"username\":";
    let (response, took) = raw_exchange(&app, raw.as_bytes(), Duration::from_secs(20)).await;
    let (status, body) = status_and_body(&response);
    assert_eq!(status, 408, "{response}");
    assert_eq!(body["reason"], "BODY_TIMEOUT");
    assert_eq!(body["code"], 408);
    assert!(
        took >= BODY_READ_TIMEOUT,
        "answered after {took:?}, before the body timeout"
    );
}

#[tokio::test]
async fn connections_that_never_finish_their_headers_are_closed() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        Options {
            header_read_timeout_ms: 500,
            ..Default::default()
        },
    )
    .await
    .expect("sqlite");
    // Half a request head, then nothing; and a connection that sends nothing.
    for raw in [
        &b"GET /health/ HTTP/1.1\r\nHost: arch.homework\r\nX-Slow: "[..],
        &b""[..],
    ] {
        let (response, took) = raw_exchange(&app, raw, Duration::from_secs(20)).await;
        assert!(
            took >= Duration::from_millis(500),
            "closed after {took:?}, before the header timeout"
        );
        // hyper may answer 408 before closing; never anything else.
        assert!(
            response.is_empty() || response.starts_with("HTTP/1.1 408"),
            "{response:?}"
        );
    }
    // A well-behaved client is unaffected.
    assert_eq!(app.get("/health/", None).await.status(), 200);
}

/// A connection to a gRPC port that sends nothing, or a few bytes of the
/// HTTP/2 preface, is closed at the preface deadline instead of being held.
#[tokio::test]
async fn grpc_connections_that_never_send_the_preface_are_closed() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let limit = otus_grpc::listener::PREFACE_TIMEOUT;
    let mut conns = Vec::new();
    for sent in [&b""[..], &b"PRI * HT"[..]] {
        let mut conn = tokio::net::TcpStream::connect(app.grpc)
            .await
            .expect("connect");
        conn.write_all(sent).await.expect("write");
        conns.push(conn);
    }
    let started = std::time::Instant::now();
    for mut conn in conns {
        // The server's SETTINGS frame may come first; read until closed.
        let mut buf = [0u8; 1024];
        let closed = tokio::time::timeout(limit * 3, async {
            loop {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "a silent gRPC connection was still open after {:?}",
            limit * 3
        );
    }
    let took = started.elapsed();
    assert!(
        took >= limit - Duration::from_millis(100),
        "closed after {took:?}, before the deadline"
    );
}

on_both_backends!(
    look_alike_usernames_are_taken_or_invalid,
    existing_look_alikes_are_keyed_apart
);

/// The ten look-alike forms of the attack run, against a name with an
/// accent, a capital and Latin letters that have Cyrillic twins.
async fn look_alike_usernames_are_taken_or_invalid(app: TestApp) {
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let original = format!("Zo\u{e9}.Lovelace{tag}");
    let user = app.register(json!({"username": original})).await;
    let look_alikes = [
        ("NFD", format!("Zoe\u{301}.Lovelace{tag}")),
        ("case", format!("zo\u{e9}.lovelace{tag}")),
        (
            "zero-width space",
            format!("Zo\u{e9}.Love\u{200B}lace{tag}"),
        ),
        (
            "zero-width joiner",
            format!("Zo\u{e9}.Love\u{200D}lace{tag}"),
        ),
        (
            "zero-width non-joiner",
            format!("Zo\u{e9}.Love\u{200C}lace{tag}"),
        ),
        ("U+FEFF", format!("\u{FEFF}Zo\u{e9}.Lovelace{tag}")),
        ("RTL override", format!("Zo\u{e9}.Lovelace{tag}\u{202E}")),
        ("soft hyphen", format!("Zo\u{e9}.Love\u{AD}lace{tag}")),
        ("fullwidth", format!("Ｚｏ\u{e9}.Ｌｏｖｅｌａｃｅ{tag}")),
        ("Cyrillic о", format!("Z\u{43e}\u{e9}.Lovelace{tag}")),
        // UTS #39 confusables (the skeleton), and characters that are not
        // letters of a name at all.
        ("ǀ (U+01C0) for l", format!("Zo\u{e9}.\u{1c0}ovelace{tag}")),
        ("ɑ (U+0251) for a", format!("Zo\u{e9}.Lovel\u{251}ce{tag}")),
        ("1 for l", format!("Zo\u{e9}.1ovelace{tag}")),
        ("Braille blank", format!("Zo\u{e9}.Lovelace{tag}\u{2800}")),
        ("line separator", format!("Zo\u{e9}.\u{2028}Lovelace{tag}")),
        ("noncharacter", format!("Zo\u{e9}.Lovelace{tag}\u{FFFF}")),
        ("private use", format!("Zo\u{e9}.Lovelace{tag}\u{E000}")),
    ];
    for (form, name) in look_alikes {
        let mut body = new_user();
        body["username"] = json!(name);
        let resp = app.post_json("/register", None, &body).await;
        let status = resp.status().as_u16();
        let answer: Value = resp.json().await.expect("JSON");
        assert!(
            (status == 409 && answer["reason"] == "USERNAME_TAKEN")
                || (status == 400 && answer["reason"] == "INVALID_USERNAME"),
            "{form} ({name:?}) was not refused: {status} {answer}"
        );
    }
    // Renaming another account to a look-alike is refused the same way.
    let (_, token) = app.user_with_token().await;
    let resp = app
        .put_json(
            "/me",
            Some(&token),
            &json!({"username": format!("ZO\u{c9}.LOVELACE{tag}")}),
        )
        .await;
    assert_eq!(resp.status(), 409, "rename to a look-alike");
    // The owner logs in with any spelling of the same name.
    let login = json!({"username": format!("zoe\u{301}.lovelace{tag}"), "password": user.password});
    let resp = app.post_json("/login", None, &login).await;
    assert_eq!(resp.status(), 200, "login by another spelling");
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["userId"], user.id);
    // Failures count per account: other spellings do not buy more guesses.
    for i in 0..crate::helpers::MAX_FAILURES {
        // A different spelling each time: one letter's case flipped.
        let spelling: String = original
            .chars()
            .enumerate()
            .map(|(j, c)| match (j == i as usize, c.is_uppercase()) {
                (true, true) => c.to_lowercase().next().unwrap_or(c),
                (true, false) => c.to_uppercase().next().unwrap_or(c),
                _ => c,
            })
            .collect();
        let guess = json!({"username": spelling, "password": "not the password"});
        let resp = app.post_json("/login", None, &guess).await;
        assert_eq!(resp.status(), 401, "guess {i} as {spelling:?}");
    }
    let right = json!({"username": original, "password": user.password});
    let resp = app.post_json("/login", None, &right).await;
    assert_eq!(
        resp.status(),
        429,
        "the account is locked after its failures, in any spelling"
    );
}

/// Rows from before the uniqueness key (written without it) get keys when
/// `otus migrate` back-fills them; an existing look-alike pair keeps both
/// accounts, and neither name can be registered again.
async fn existing_look_alikes_are_keyed_apart(app: TestApp) {
    use sea_orm::ConnectionTrait as _;
    let db = otus_db::connect_plain(&app.database_url)
        .await
        .expect("connect");
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..6];
    for name in [format!("old{tag}"), format!("OLD{tag}")] {
        db.execute_unprepared(&format!(
            "INSERT INTO users (username, first_name, last_name, email, phone, created_at, updated_at) \
             VALUES ('{name}', '', '', 'x@example.com', '', '2026-11-24T00:00:00+00:00', '2026-11-24T00:00:00+00:00')"
        ))
        .await
        .expect("insert a row the old way");
    }
    let filled = otus_users::username::backfill_keys(&db)
        .await
        .expect("backfill");
    assert_eq!(filled, 4, "2 rows x (key, skeleton)");
    assert_eq!(
        otus_users::username::backfill_keys(&db)
            .await
            .expect("again"),
        0
    );
    for name in [
        format!("Old{tag}"),
        format!("old{tag}"),
        format!("0ld{tag}"),
    ] {
        let mut body = new_user();
        body["username"] = json!(name);
        let resp = app.post_json("/register", None, &body).await;
        assert_eq!(resp.status(), 409, "{name} after the back-fill");
    }
}

#[tokio::test]
async fn ambiguous_bodies_are_refused_and_answers_are_not_cached_or_sniffed() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let dup = r#"{"username":"a","username":"b","password":"long enough password"}"#;
    let resp = app
        .send(Method::POST, "/login", None, Some(dup.into()))
        .await;
    let body = assert_400(resp, "repeated key").await;
    assert_eq!(body["reason"], "DUPLICATE_FIELD", "{body}");

    let login = json!({"username": "nobody", "password": "long enough password"}).to_string();
    for content_types in [
        vec!["application/json; charset=utf-16"],
        vec!["application/json; charset=latin1"],
        vec!["application/json", "text/plain"],
    ] {
        let mut req = app
            .client
            .post(format!("{}/login", app.base))
            .body(login.clone());
        for ct in &content_types {
            req = req.header("content-type", *ct);
        }
        let resp = req.send().await.expect("send");
        assert_eq!(resp.status(), 415, "{content_types:?}");
    }
    let resp = app
        .client
        .post(format!("{}/login", app.base))
        .header("content-type", "application/json; charset=UTF-8")
        .body(login)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 401, "UTF-8 is fine");

    let (_, token) = app.user_with_token().await;
    for (path, token, no_store) in [
        ("/me", Some(token.as_str()), true),
        ("/nope", None, true),
        // Public is what the catalog's routes say, not a path prefix.
        ("/productsearch", None, true),
        ("/products?q=xyz", None, false),
        ("/products/1", None, false),
    ] {
        let resp = app.get(path, token).await;
        let h = resp.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(
            h.get("cache-control").is_some_and(|v| v == "no-store"),
            no_store,
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_long_uri_and_too_many_headers_get_json_errors() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let long = format!("/products?q={}", "a".repeat(20 * 1024));
    let resp = app.get(&long, None).await;
    assert_eq!(resp.status(), 414);
    let body: Value = resp.json().await.expect("414 is JSON");
    assert_eq!(body["reason"], "URI_TOO_LONG");

    let mut req = app.client.get(format!("{}/health/", app.base));
    for i in 0..150 {
        req = req.header(format!("x-h{i}"), "v");
    }
    let resp = req.send().await.expect("send");
    assert_eq!(resp.status(), 431);
    let body: Value = resp.json().await.expect("431 is JSON");
    assert_eq!(body["reason"], "HEADERS_TOO_LARGE");

    let resp = app
        .client
        .get(format!("{}/health/", app.base))
        .header("x-big", "b".repeat(40 * 1024))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 431);
    let ct = resp.headers()["content-type"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    assert!(ct.starts_with("application/json"), "{ct}");
}

/// Sends `head` (request line and headers, without the blank line) on a
/// connection of its own and returns the status and JSON body.
async fn raw_request(app: &TestApp, head: &str) -> (u16, Value, String) {
    let raw = format!("{head}\r\nConnection: close\r\n\r\n");
    let (response, _) = raw_exchange(app, raw.as_bytes(), Duration::from_secs(20)).await;
    let (status, body) = status_and_body(&response);
    (status, body, response)
}

/// A query value that is not valid percent-encoded UTF-8 is refused, never
/// decoded into a guess that is answered (empty) and cached.
#[tokio::test]
async fn malformed_encoding_in_a_search_is_400_not_an_empty_cached_answer() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    for target in [
        "/products?q=%FFabc",
        "/products?q=%zz",
        "/products?q=abc%",
        "/products?q=abc&category=%FF",
        "/products?q=%C3%28abc",
    ] {
        for _ in 0..2 {
            let head = format!("GET {target} HTTP/1.1\r\nHost: arch.homework");
            let (status, body, response) = raw_request(&app, &head).await;
            assert_eq!(status, 400, "{target}: {response}");
            assert_eq!(body["reason"], "INVALID_ENCODING", "{target}");
            assert!(
                !response.to_ascii_lowercase().contains("x-cache"),
                "{response}"
            );
        }
    }
    // Well-formed escapes, `+` for a space, still work (once the index is built).
    app.catalog_index_current().await;
    let (status, _, response) = raw_request(
        &app,
        "GET /products?q=%D1%87%D0%B0%D0%B9+%D0%B7%D0%B5%D0%BB%D1%91%D0%BD%D1%8B%D0%B9 HTTP/1.1\r\nHost: arch.homework",
    )
    .await;
    assert_eq!(status, 200, "{response}");
}

/// A request two parties could read differently is 400 (RFC 9112: no Host
/// or two; and which credentials would count?).
#[tokio::test]
async fn ambiguous_requests_are_400() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let (_, token) = app.user_with_token().await;
    let cases = [
        ("GET /health/ HTTP/1.1".to_owned(), "INVALID_HOST"),
        (
            "GET /health/ HTTP/1.1\r\nHost: arch.homework\r\nHost: evil.example".to_owned(),
            "INVALID_HOST",
        ),
        (
            format!(
                "GET /me HTTP/1.1\r\nHost: arch.homework\r\nAuthorization: Bearer {token}\r\n\
                 Authorization: Bearer someone-else"
            ),
            "AMBIGUOUS_CREDENTIALS",
        ),
        (
            format!(
                "GET /me HTTP/1.1\r\nHost: arch.homework\r\nCookie: otus_session={token}; otus_session=other"
            ),
            "AMBIGUOUS_CREDENTIALS",
        ),
        (
            format!(
                "GET /me HTTP/1.1\r\nHost: arch.homework\r\nCookie: otus_session={token}\r\n\
                 Cookie: otus_session=other"
            ),
            "AMBIGUOUS_CREDENTIALS",
        ),
    ];
    for (head, reason) in cases {
        let (status, body, response) = raw_request(&app, &head).await;
        assert_eq!(status, 400, "{head}: {response}");
        assert_eq!(body["reason"], reason, "{head}");
    }
    // Unambiguous: one Host (HTTP/1.0 may omit it), one set of credentials.
    for head in [
        "GET /health/ HTTP/1.0".to_owned(),
        format!(
            "GET /me HTTP/1.1\r\nHost: arch.homework\r\nCookie: theme=dark; otus_session={token}"
        ),
        format!("GET /me HTTP/1.1\r\nHost: arch.homework\r\nAuthorization: Bearer {token}"),
    ] {
        let (status, _, response) = raw_request(&app, &head).await;
        assert_eq!(status, 200, "{head}: {response}");
    }
}
