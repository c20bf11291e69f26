//! Authentication and authorization: every attack from the auth issue's list
//! must fail, on SQLite and on PostgreSQL (+ Redis when configured).

use std::time::{Duration, Instant};

use reqwest::Method;
use sea_orm::{ConnectionTrait as _, Statement};
use serde_json::{Value, json};

use crate::helpers::{
    MAX_ATTEMPTS_PER_ADDRESS, MAX_FAILURES, TestApp, assert_error, new_user, on_both_backends,
};

on_both_backends!(
    another_users_profile_cannot_be_read_edited_or_deleted,
    protected_routes_without_credentials_are_401,
    identity_headers_grant_nothing,
    someone_elses_id_in_a_body_is_rejected,
    a_token_stops_working_at_logout,
    every_session_ends_when_the_user_is_deleted,
    forged_and_truncated_tokens_are_401,
    login_answers_do_not_reveal_which_usernames_exist,
    password_guessing_is_limited_per_username,
    login_attempts_are_limited_per_client_address,
    passwords_are_stored_only_as_argon2id_hashes,
    a_failed_registration_leaves_no_orphan_profile,
);

async fn another_users_profile_cannot_be_read_edited_or_deleted(app: TestApp) {
    let (victim, victim_token) = app.user_with_token().await;
    let (_, attacker) = app.user_with_token().await;
    let path = format!("/user/{}", victim.id);
    let a = Some(attacker.as_str());

    assert_error(app.get(&path, a).await, 403, "NOT_OWNER").await;
    assert_error(
        app.put_json(&path, a, &json!({"email": "evil@example.com"}))
            .await,
        403,
        "NOT_OWNER",
    )
    .await;
    assert_error(app.delete(&path, a).await, 403, "NOT_OWNER").await;
    // Ids that do not exist answer the same: no probing which ids exist.
    assert_error(app.get("/user/987654321", a).await, 403, "NOT_OWNER").await;

    let now: Value = app
        .get(&path, Some(&victim_token))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(now, victim.profile, "the victim's profile is unchanged");
}

async fn protected_routes_without_credentials_are_401(app: TestApp) {
    let user = app.register(json!({})).await;
    let path = format!("/user/{}", user.id);
    let cases = [
        (Method::GET, path.clone(), None),
        (
            Method::PUT,
            path.clone(),
            Some(json!({"firstName": "x"}).to_string()),
        ),
        (Method::DELETE, path.clone(), None),
        (Method::GET, "/me".to_owned(), None),
        (Method::PUT, "/me".to_owned(), Some("{}".to_owned())),
        (Method::POST, "/logout".to_owned(), None),
    ];
    for (method, p, body) in cases {
        let resp = app.send(method.clone(), &p, None, body).await;
        assert!(
            resp.headers().contains_key("www-authenticate"),
            "{method} {p}"
        );
        assert_error(resp, 401, "MISSING_CREDENTIALS").await;
    }
}

async fn identity_headers_grant_nothing(app: TestApp) {
    let (victim, _) = app.user_with_token().await;
    let (_, attacker) = app.user_with_token().await;
    let path = format!("/user/{}", victim.id);
    let spoof = |req: reqwest::RequestBuilder| {
        req.header("x-user-id", victim.id.to_string())
            .header("x-login", victim.username.clone())
            .header("x-forwarded-user", victim.username.clone())
    };
    let anon = spoof(app.client.get(format!("{}{path}", app.base)))
        .send()
        .await
        .expect("get");
    assert_error(anon, 401, "MISSING_CREDENTIALS").await;
    let logged_in = spoof(app.client.get(format!("{}{path}", app.base)))
        .bearer_auth(&attacker)
        .send()
        .await
        .expect("get");
    assert_error(logged_in, 403, "NOT_OWNER").await;
}

async fn someone_elses_id_in_a_body_is_rejected(app: TestApp) {
    let (victim, victim_token) = app.user_with_token().await;
    let (attacker, attacker_token) = app.user_with_token().await;
    // Registration carrying the victim's id.
    let mut body = new_user();
    body["id"] = json!(victim.id);
    assert_error(
        app.post_json("/user", None, &body).await,
        400,
        "READ_ONLY_FIELD",
    )
    .await;
    assert_error(
        app.post_json("/register", None, &body).await,
        400,
        "READ_ONLY_FIELD",
    )
    .await;
    // An update of one's own profile carrying the victim's id.
    for path in [format!("/user/{}", attacker.id), "/me".to_owned()] {
        let resp = app
            .put_json(
                &path,
                Some(&attacker_token),
                &json!({"id": victim.id, "email": "x@evil.com"}),
            )
            .await;
        assert_error(resp, 400, "READ_ONLY_FIELD").await;
    }
    let now: Value = app
        .get(&format!("/user/{}", victim.id), Some(&victim_token))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(now, victim.profile);
}

async fn a_token_stops_working_at_logout(app: TestApp) {
    let (_, token) = app.user_with_token().await;
    assert_eq!(app.get("/me", Some(&token)).await.status(), 200);
    // The session lives where configured: Redis, or the SQL table.
    let db = otus_db::connect_plain(&app.database_url)
        .await
        .expect("connect");
    let rows = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM sessions",
        ))
        .await
        .expect("query")
        .expect("row");
    let n: i64 = rows.try_get("", "n").expect("n");
    assert_eq!(
        n,
        if app.redis { 0 } else { 1 },
        "sessions in SQL (redis: {})",
        app.redis
    );
    let resp = app.send(Method::POST, "/logout", Some(&token), None).await;
    assert_eq!(resp.status(), 204);
    let cookie = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        cookie.contains("otus_session=;") && cookie.contains("Max-Age=0"),
        "{cookie}"
    );
    assert_error(app.get("/me", Some(&token)).await, 401, "INVALID_SESSION").await;
}

async fn every_session_ends_when_the_user_is_deleted(app: TestApp) {
    let user = app.register(json!({})).await;
    let first = app.login(&user).await;
    let second = app.login(&user).await;
    assert_eq!(
        app.delete(&format!("/user/{}", user.id), Some(&first))
            .await
            .status(),
        204
    );
    for token in [&first, &second] {
        assert_error(app.get("/me", Some(token)).await, 401, "INVALID_SESSION").await;
    }
}

async fn forged_and_truncated_tokens_are_401(app: TestApp) {
    let (user, token) = app.user_with_token().await;
    let path = format!("/user/{}", user.id);
    let truncated = &token[..token.len() - 1];
    let forged = "A".repeat(token.len());
    // An identity token is for services, not a session: it must not work at the edge.
    let identity = app.mint(&otus_identity::Identity::User(user.id));
    let long = "x".repeat(4000);
    for bad in [truncated, forged.as_str(), identity.as_str(), long.as_str()] {
        assert_error(app.get(&path, Some(bad)).await, 401, "INVALID_SESSION").await;
    }
    let resp = app
        .client
        .get(format!("{}{path}", app.base))
        .header("authorization", format!("Basic {token}"))
        .send()
        .await
        .expect("get");
    assert_error(resp, 401, "MISSING_CREDENTIALS").await;
}

async fn login_answers_do_not_reveal_which_usernames_exist(app: TestApp) {
    let user = app.register(json!({})).await;
    let wrong = app
        .post_json(
            "/login",
            None,
            &json!({"username": user.username, "password": "not the password"}),
        )
        .await;
    let unknown = app
        .post_json(
            "/login",
            None,
            &json!({"username": "no-such-user-xyz", "password": "not the password"}),
        )
        .await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(unknown.status(), 401);
    let (wrong, unknown) = (
        wrong.text().await.expect("body"),
        unknown.text().await.expect("body"),
    );
    assert_eq!(wrong, unknown, "identical bodies");

    // Both answers pay for one argon2id verification. A guard against the
    // shortcut (answering unknown users without hashing, ~100x faster), not a
    // benchmark: medians of a few tries, with a wide margin.
    async fn median_ms(app: &TestApp, username: &str, tries: usize) -> f64 {
        let mut ms = Vec::new();
        for i in 0..tries {
            let started = Instant::now();
            let resp = app
                .post_json("/login", None, &json!({"username": format!("{username}{}", if username.starts_with("ghost") { i.to_string() } else { String::new() }), "password": "wrong password"}))
                .await;
            assert_eq!(resp.status(), 401);
            ms.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        ms.sort_by(f64::total_cmp);
        ms[ms.len() / 2]
    }
    let other = app.register(json!({})).await;
    let known = median_ms(&app, &other.username, (MAX_FAILURES - 1) as usize).await;
    let ghost = median_ms(&app, "ghost-", 4).await;
    eprintln!("login timing: wrong password {known:.1} ms, unknown user {ghost:.1} ms (medians)");
    assert!(
        ghost > known * 0.3,
        "unknown users answer much faster ({ghost:.1} ms vs {known:.1} ms)"
    );
}

async fn password_guessing_is_limited_per_username(app: TestApp) {
    let user = app.register(json!({})).await;
    for _ in 0..MAX_FAILURES {
        let resp = app
            .post_json(
                "/login",
                None,
                &json!({"username": user.username, "password": "guess guess"}),
            )
            .await;
        assert_error(resp, 401, "INVALID_CREDENTIALS").await;
    }
    // Even the right password is refused until the window passes.
    let resp = app
        .post_json(
            "/login",
            None,
            &json!({"username": user.username, "password": user.password}),
        )
        .await;
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .expect("Retry-After seconds");
    assert!(retry > 0 && retry <= 300, "{retry}");
    assert_error(resp, 429, "TOO_MANY_ATTEMPTS").await;
    // Other users are not affected.
    let other = app.register(json!({})).await;
    app.login(&other).await;
}

async fn login_attempts_are_limited_per_client_address(app: TestApp) {
    // The test edge trusts X-Real-IP (as behind the ingress); use an address
    // of our own so other tests' logins do not count.
    let addr = "203.0.113.77";
    let mut last = 0;
    for i in 0..=MAX_ATTEMPTS_PER_ADDRESS {
        let resp = app
            .client
            .post(format!("{}/login", app.base))
            .header("x-real-ip", addr)
            .json(&json!({"username": format!("spray-{i}"), "password": "Winter2026!"}))
            .send()
            .await
            .expect("login");
        last = resp.status().as_u16();
        if i < MAX_ATTEMPTS_PER_ADDRESS {
            assert_eq!(last, 401, "attempt {i}");
        }
    }
    assert_eq!(
        last,
        429,
        "attempt {} from one address",
        MAX_ATTEMPTS_PER_ADDRESS + 1
    );
}

async fn passwords_are_stored_only_as_argon2id_hashes(app: TestApp) {
    let user = app.register(json!({})).await;
    let db = otus_db::connect_plain(&app.database_url)
        .await
        .expect("connect");
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT password_hash FROM credentials WHERE user_id = {}",
                user.id
            ),
        ))
        .await
        .expect("query")
        .expect("a credential row");
    let hash: String = row.try_get("", "password_hash").expect("column");
    assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
    assert!(!hash.contains(&user.password));
    // Nothing else in the users table looks like the password either.
    let profile = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT * FROM users WHERE id = {}", user.id),
        ))
        .await
        .expect("query");
    assert!(!format!("{profile:?}").contains(&user.password));
}

async fn a_failed_registration_leaves_no_orphan_profile(app: TestApp) {
    // Break the credential store for real: its table disappears.
    let db = otus_db::connect_plain(&app.database_url)
        .await
        .expect("connect");
    db.execute_unprepared("DROP TABLE credentials")
        .await
        .expect("drop");

    let body = new_user();
    let resp = app.post_json("/user", None, &body).await;
    // A missing table is the service's own fault, not a reason to retry:
    // an opaque 500 (the cause is in the log, never in the answer).
    assert_error(resp, 500, "INTERNAL").await;

    // The profile created in step one was deleted again (compensation).
    let mut users = otus_proto::users::v1::users_service_client::UsersServiceClient::connect(
        format!("http://{}", app.grpc),
    )
    .await
    .expect("connect");
    let mut req = tonic::Request::new(otus_proto::users::v1::LookupUsernameRequest {
        username: body["username"].as_str().expect("username").to_owned(),
    });
    otus_identity::attach(
        &mut req,
        &app.mint(&otus_identity::Identity::auth_service()),
    );
    let status = users
        .lookup_username(req)
        .await
        .expect_err("no orphan profile");
    assert_eq!(status.code(), tonic::Code::NotFound);
}

// The options expression is evaluated inside the generated module: full path.
on_both_backends!(options = crate::helpers::Options { session_ttl_secs: 1, ..Default::default() }; sessions_expire_after_their_ttl);

/// Valid before its TTL (1 s here), invalid after it, wherever in a second
/// the login happened. "Valid" is only asserted when `/me` answered before
/// the TTL could have run out (counted from before the login request), so a
/// stalled machine retries instead of failing or passing unseen.
async fn sessions_expire_after_their_ttl(app: TestApp) {
    const TTL: Duration = Duration::from_secs(1);
    const ATTEMPTS: u32 = 5;
    let user = app.register(json!({})).await;
    for attempt in 0..ATTEMPTS {
        let before_login = Instant::now();
        let token = app.login(&user).await;
        let logged_in = Instant::now();
        let me = app.get("/me", Some(&token)).await.status();
        let answered = before_login.elapsed();
        let conclusive = answered < TTL;
        if conclusive {
            assert_eq!(
                me, 200,
                "a {TTL:?} session was refused {answered:?} after login"
            );
        } else {
            eprintln!(
                "attempt {attempt}: /me answered {answered:?} after login, past the TTL: retrying"
            );
        }
        tokio::time::sleep_until((logged_in + TTL + Duration::from_millis(100)).into()).await;
        assert_error(app.get("/me", Some(&token)).await, 401, "INVALID_SESSION").await;
        if conclusive {
            return;
        }
    }
    panic!("/me never answered within the session TTL in {ATTEMPTS} attempts: machine too slow");
}
