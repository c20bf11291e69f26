//! `docs/openapi.yaml` describes routes the edge really serves.

use serde_json::Value;

use crate::helpers::{Backend, TestApp};

/// `(method, path)` of every operation in the OpenAPI file. The file's layout
/// is fixed (paths at two spaces, methods at four), so lines suffice.
fn documented_operations() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/openapi.yaml"
    ))
    .expect("docs/openapi.yaml");
    let mut ops = Vec::new();
    let mut in_paths = false;
    let mut path = String::new();
    for line in text.lines() {
        if !line.starts_with(' ') {
            in_paths = line == "paths:";
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(p) = line.strip_prefix("  /") {
            path = format!("/{}", p.trim_end_matches(':'));
        } else if let Some(m) = line.strip_prefix("    ").and_then(|l| l.strip_suffix(':'))
            && ["get", "post", "put", "delete", "patch"].contains(&m)
        {
            ops.push((m.to_uppercase(), path.clone()));
        }
    }
    ops
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let ops = documented_operations();
    assert!(ops.len() >= 7, "parsed too few operations: {ops:?}");
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    for (method, path) in ops {
        let concrete = path.replace("{userId}", "1").replace("{id}", "1");
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let resp = app
            .send(method.clone(), &concrete, None, Some("{}".into()))
            .await;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(
            body["reason"] != "NOT_FOUND" && body["reason"] != "METHOD_NOT_ALLOWED",
            "{method} {path} is documented but not routed ({status} {body})"
        );
    }
}
