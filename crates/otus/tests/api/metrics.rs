//! `/metrics` on the admin port: route templates, never raw paths.

use crate::helpers::{Backend, TestApp};

#[tokio::test]
async fn request_histogram_is_labelled_by_route_template_on_the_admin_port_only() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let (user, token) = app.user_with_token().await;
    let id = user.id;
    assert_eq!(
        app.get(&format!("/user/{id}"), Some(&token)).await.status(),
        200
    );
    assert_eq!(app.get("/user/999999", Some(&token)).await.status(), 403);
    assert_eq!(app.get("/no/such/route/123", None).await.status(), 404);

    let text = app.metrics().await;
    for series in [
        r#"http_server_request_duration_seconds_count{method="POST",route="/user",status="201"} 1"#,
        r#"http_server_request_duration_seconds_count{method="GET",route="/user/{userId}",status="200"} 1"#,
        r#"http_server_request_duration_seconds_count{method="GET",route="/user/{userId}",status="403"} 1"#,
        r#"http_server_request_duration_seconds_count{method="GET",route="unmatched",status="404"} 1"#,
        r#"http_server_request_duration_seconds_bucket{method="GET",route="/user/{userId}",status="200",le="0.00025"}"#,
    ] {
        assert!(text.contains(series), "missing {series} in:\n{text}");
    }
    assert!(
        !text.contains(&format!("/user/{id}\"")),
        "raw path used as a label"
    );
    assert!(!text.contains("/no/such/route"), "raw path used as a label");

    let public = app.get("/metrics", None).await;
    assert_eq!(
        public.status(),
        404,
        "the public port must not serve metrics"
    );
}
