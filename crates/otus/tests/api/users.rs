//! The `/user` resource, on SQLite and on PostgreSQL.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{BODY_LIMIT, TestApp, assert_error, new_user, on_both_backends};

on_both_backends!(
    a_user_goes_through_create_read_update_delete,
    update_changes_only_the_fields_sent,
    bad_input_gets_a_400_json_error_and_changes_nothing,
    usernames_are_unique,
    exactly_one_of_twenty_racing_registrations_wins,
    a_body_over_the_limit_gets_413,
);

async fn a_user_goes_through_create_read_update_delete(app: TestApp) {
    let input = new_user();
    let resp = app.post_json("/user", &input).await;
    assert_eq!(resp.status(), 201);
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("Location header")
        .to_owned();
    let created: Value = resp.json().await.expect("json");
    let id = created["id"].as_i64().expect("numeric id");
    assert!(id > 0);
    assert_eq!(location, format!("/user/{id}"));
    for field in ["username", "firstName", "lastName", "email", "phone"] {
        assert_eq!(created[field], input[field], "{field}");
    }
    assert!(
        created.get("password").is_none(),
        "password must never be returned"
    );

    let read = app.get(&location).await;
    assert_eq!(read.status(), 200);
    assert_eq!(read.json::<Value>().await.expect("json"), created);

    let resp = app
        .put_json(
            &location,
            &json!({"firstName": "Augusta", "email": "augusta@example.org"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let updated: Value = resp.json().await.expect("json");
    assert_eq!(updated["firstName"], "Augusta");
    assert_eq!(updated["email"], "augusta@example.org");
    assert_eq!(
        app.get(&location)
            .await
            .json::<Value>()
            .await
            .expect("json"),
        updated
    );

    let resp = app.delete(&location).await;
    assert_eq!(resp.status(), 204);
    assert!(resp.text().await.expect("body").is_empty());
    assert_error(app.get(&location).await, 404, "USER_NOT_FOUND").await;
    assert_error(app.delete(&location).await, 404, "USER_NOT_FOUND").await;
    assert_error(
        app.put_json(&location, &json!({"firstName": "x"})).await,
        404,
        "USER_NOT_FOUND",
    )
    .await;
}

async fn update_changes_only_the_fields_sent(app: TestApp) {
    let user = app.create_user(json!({})).await;
    let path = format!("/user/{}", user["id"]);

    let after: Value = app
        .put_json(&path, &json!({"phone": "8 800 555 35 35"}))
        .await
        .json()
        .await
        .expect("json");
    let mut expected = user.clone();
    expected["phone"] = json!("8 800 555 35 35");
    assert_eq!(after, expected);

    // An empty object and explicit nulls change nothing.
    let same: Value = app
        .put_json(&path, &json!({}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(same, expected);
    let same: Value = app
        .put_json(&path, &json!({"lastName": null}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(same, expected);

    // Optional fields can be cleared with an empty string.
    let cleared: Value = app
        .put_json(&path, &json!({"phone": ""}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(cleared["phone"], "");
}

async fn bad_input_gets_a_400_json_error_and_changes_nothing(app: TestApp) {
    let user = app.create_user(json!({})).await;
    let id = user["id"].as_i64().expect("id");
    let path = format!("/user/{id}");
    let long_name = "a".repeat(257);

    // (method, path, raw body, reason)
    let cases: Vec<(Method, String, String, &str)> = vec![
        (
            Method::POST,
            "/user".into(),
            "{\"username\": ".into(),
            "MALFORMED_JSON",
        ),
        (Method::POST, "/user".into(), "".into(), "MALFORMED_JSON"),
        (
            Method::POST,
            "/user".into(),
            "[1, 2]".into(),
            "INVALID_BODY",
        ),
        (
            Method::POST,
            "/user".into(),
            json!({"username": 42, "email": "a@b.co"}).to_string(),
            "INVALID_FIELD_TYPE",
        ),
        (
            Method::POST,
            "/user".into(),
            json!({"id": 7, "username": "x", "email": "a@b.co"}).to_string(),
            "READ_ONLY_FIELD",
        ),
        (
            Method::POST,
            "/user".into(),
            json!({"username": "x", "email": "a@b.co", "isAdmin": true}).to_string(),
            "UNKNOWN_FIELD",
        ),
        (
            Method::POST,
            "/user".into(),
            json!({"username": "x", "email": "not-an-email"}).to_string(),
            "INVALID_EMAIL",
        ),
        (
            Method::POST,
            "/user".into(),
            json!({"username": "x", "email": "a@b.co", "phone": "call me"}).to_string(),
            "INVALID_PHONE",
        ),
        (
            Method::POST,
            "/user".into(),
            json!({"username": long_name, "email": "a@b.co"}).to_string(),
            "INVALID_USERNAME",
        ),
        (
            Method::POST,
            "/user".into(),
            json!({"username": "", "email": "a@b.co"}).to_string(),
            "INVALID_USERNAME",
        ),
        (
            Method::POST,
            "/user".into(),
            json!({"email": "a@b.co"}).to_string(),
            "INVALID_USERNAME",
        ),
        (
            Method::POST,
            "/user".into(),
            json!({"username": "nomail"}).to_string(),
            "INVALID_EMAIL",
        ),
        (
            Method::PUT,
            path.clone(),
            json!({"id": id + 1}).to_string(),
            "READ_ONLY_FIELD",
        ),
        (
            Method::PUT,
            path.clone(),
            json!({"email": "broken@"}).to_string(),
            "INVALID_EMAIL",
        ),
        (
            Method::PUT,
            path.clone(),
            json!({"username": ""}).to_string(),
            "INVALID_USERNAME",
        ),
        (
            Method::PUT,
            path.clone(),
            json!({"firstName": ["x"]}).to_string(),
            "INVALID_FIELD_TYPE",
        ),
        (
            Method::PUT,
            path.clone(),
            json!({"password": "new"}).to_string(),
            "UNKNOWN_FIELD",
        ),
        (
            Method::PUT,
            path.clone(),
            "{not json}".into(),
            "MALFORMED_JSON",
        ),
        (
            Method::PUT,
            "/user/abc".into(),
            json!({"firstName": "x"}).to_string(),
            "INVALID_ID",
        ),
        (Method::GET, "/user/abc".into(), String::new(), "INVALID_ID"),
        (Method::GET, "/user/0".into(), String::new(), "INVALID_ID"),
        (
            Method::GET,
            "/user/99999999999999999999".into(),
            String::new(),
            "INVALID_ID",
        ),
        (
            Method::DELETE,
            "/user/1.5".into(),
            String::new(),
            "INVALID_ID",
        ),
    ];
    for (method, p, body, reason) in cases {
        let resp = app.send_raw(method.clone(), &p, body.clone()).await;
        let status = resp.status();
        assert_eq!(status, 400, "{method} {p} {body}");
        assert_error(resp, 400, reason).await;
    }

    // Wrong content type is a client error too.
    let resp = app
        .client
        .post(format!("{}/user", app.base))
        .header("content-type", "text/plain")
        .body(new_user().to_string())
        .send()
        .await
        .expect("post");
    assert_error(resp, 415, "UNSUPPORTED_MEDIA_TYPE").await;

    // Nothing above changed the stored user.
    let now: Value = app.get(&path).await.json().await.expect("json");
    assert_eq!(now, user);
}

async fn usernames_are_unique(app: TestApp) {
    let first = app.create_user(json!({})).await;
    let mut again = new_user();
    again["username"] = first["username"].clone();
    assert_error(app.post_json("/user", &again).await, 409, "USERNAME_TAKEN").await;

    // Renaming someone else onto a taken name is a conflict too, and the
    // renamed user keeps their name.
    let second = app.create_user(json!({})).await;
    let path = format!("/user/{}", second["id"]);
    assert_error(
        app.put_json(&path, &json!({"username": first["username"]}))
            .await,
        409,
        "USERNAME_TAKEN",
    )
    .await;
    let now: Value = app.get(&path).await.json().await.expect("json");
    assert_eq!(now["username"], second["username"]);
}

async fn exactly_one_of_twenty_racing_registrations_wins(app: TestApp) {
    let template = new_user();
    let app = std::sync::Arc::new(app);
    let attempts = (0..20).map(|i| {
        let app = app.clone();
        let mut body = template.clone();
        body["email"] = json!(format!("racer{i}@example.com"));
        tokio::spawn(async move { app.post_json("/user", &body).await.status().as_u16() })
    });
    let mut statuses = Vec::new();
    for a in attempts {
        statuses.push(a.await.expect("task"));
    }
    statuses.sort_unstable();
    let created = statuses.iter().filter(|s| **s == 201).count();
    let conflicts = statuses.iter().filter(|s| **s == 409).count();
    assert_eq!((created, conflicts), (1, 19), "statuses: {statuses:?}");
}

async fn a_body_over_the_limit_gets_413(app: TestApp) {
    let mut body = new_user();
    body["firstName"] = json!("x".repeat(BODY_LIMIT + 1));
    assert_error(
        app.post_json("/user", &body).await,
        413,
        "PAYLOAD_TOO_LARGE",
    )
    .await;
    // The same data under the limit is judged on its merits (too long a name).
    body["firstName"] = json!("x".repeat(300));
    assert_error(
        app.post_json("/user", &body).await,
        400,
        "INVALID_FIRST_NAME",
    )
    .await;
}
