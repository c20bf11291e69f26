//! `docs/openapi.yaml`: the routes it documents are the routes the edge
//! serves, its user schemas name the field table's fields, and its surface
//! (operations, their answers, the schemas' fields) is snapshotted, so any
//! change to the documented API is a reviewable diff.

use std::collections::BTreeSet;

use otus_proto::user_fields::USER_FIELDS;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp};

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// The OpenAPI document, parsed.
fn document() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/openapi.yaml"
    ))
    .expect("docs/openapi.yaml");
    serde_norway::from_str(&text).expect("docs/openapi.yaml is YAML")
}

/// `(method, path, operation)` of every documented operation.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let paths = doc["paths"].as_object().expect("paths");
    let mut ops = Vec::new();
    for (path, item) in paths {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                ops.push((method.to_uppercase(), path.clone(), op.clone()));
            }
        }
    }
    ops
}

/// The property names of a component schema.
fn properties(doc: &Value, schema: &str) -> BTreeSet<String> {
    doc["components"]["schemas"][schema]["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("schema {schema} has properties"))
        .keys()
        .cloned()
        .collect()
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let doc = document();
    let ops = operations(&doc);
    assert!(ops.len() >= 7, "parsed too few operations: {ops:?}");
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    for (method, path, _) in ops {
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

#[test]
fn the_user_schemas_name_every_profile_field() {
    let doc = document();
    let fields: BTreeSet<String> = USER_FIELDS.iter().map(|f| f.json.to_owned()).collect();
    let with = |extra: &str| {
        let mut s = fields.clone();
        s.insert(extra.to_owned());
        s
    };
    assert_eq!(properties(&doc, "User"), with("id"), "User (the answer)");
    assert_eq!(
        properties(&doc, "NewUser"),
        with("password"),
        "NewUser (registration)"
    );
    assert_eq!(properties(&doc, "UserUpdate"), with("id"), "UserUpdate");
}

#[test]
fn the_documented_surface_is_snapshotted() {
    let doc = document();
    let operations: Vec<Value> = operations(&doc)
        .into_iter()
        .map(|(method, path, op)| {
            let answers: Vec<&String> = op["responses"]
                .as_object()
                .map(|r| r.keys().collect())
                .unwrap_or_default();
            json!({
                "operation": format!("{method} {path}"),
                "id": op["operationId"],
                "answers": answers,
            })
        })
        .collect();
    let schemas: serde_json::Map<String, Value> = doc["components"]["schemas"]
        .as_object()
        .expect("schemas")
        .iter()
        .map(|(name, s)| {
            let props: Vec<&String> = s["properties"]
                .as_object()
                .map(|p| p.keys().collect())
                .unwrap_or_default();
            (
                name.clone(),
                json!({ "required": s["required"], "properties": props }),
            )
        })
        .collect();
    insta::assert_json_snapshot!(
        "openapi_surface",
        json!({ "operations": operations, "schemas": schemas })
    );
}
