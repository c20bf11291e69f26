//! One REST request that touches the database is one trace: the edge's span,
//! the gRPC client and server spans, and the SQL span, correctly parented, and
//! continuing the client's W3C `traceparent`. Received by a real OTLP gRPC
//! receiver in this process (its own test binary: the tracer provider is
//! global to a process).

#![expect(clippy::expect_used, reason = "a failed expectation is a failed test")]

#[path = "api/helpers.rs"]
#[allow(
    dead_code,
    unused_macros,
    unused_imports,
    reason = "shared with the api test binary, which uses all of it"
)]
mod helpers;

use std::{collections::HashMap, time::Duration};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    trace::v1::{Span, span::SpanKind},
};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use helpers::{Backend, TestApp};

struct Receiver(mpsc::UnboundedSender<ExportTraceServiceRequest>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let _ = self.0.send(request.into_inner());
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_request_is_one_trace_from_edge_through_grpc_to_sql() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Receiver(tx)))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let guard = otus_telemetry::init(
        otus_telemetry::LogFormat::Text,
        "otus-trace-test",
        Some(format!("http://{addr}")),
    );

    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let resp = app
        .client
        .get(format!("{}/products/1", app.base))
        .header("traceparent", format!("00-{trace_id}-{client_span}-01"))
        .send()
        .await
        .expect("request");
    assert_eq!(
        resp.status(),
        404,
        "no products: the lookup still runs its SQL"
    );
    tokio::task::block_in_place(|| guard.shutdown());

    // Everything exported for our trace id.
    let mut spans: Vec<Span> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Ok(Some(batch)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        for rs in batch.resource_spans {
            for ss in rs.scope_spans {
                spans.extend(
                    ss.spans
                        .into_iter()
                        .filter(|s| hex(&s.trace_id) == trace_id),
                );
            }
        }
        if spans.iter().any(|s| s.name.starts_with("sea_orm")) && spans.len() >= 4 {
            break;
        }
    }
    let names: Vec<String> = spans
        .iter()
        .map(|s| format!("{} ({})", s.name, s.kind))
        .collect();
    let by_id: HashMap<String, &Span> = spans.iter().map(|s| (hex(&s.span_id), s)).collect();
    let find = |name: &str, kind: SpanKind| {
        spans
            .iter()
            .find(|s| s.name == name && s.kind == kind as i32)
            .unwrap_or_else(|| panic!("no {name} {kind:?} span in {names:?}"))
    };

    let edge = find("GET /products/{id}", SpanKind::Server);
    let status = edge
        .attributes
        .iter()
        .find(|a| a.key == "http.status_code")
        .and_then(|a| a.value.as_ref())
        .and_then(|v| v.value.clone());
    assert_eq!(
        status,
        Some(opentelemetry_proto::tonic::common::v1::any_value::Value::IntValue(404)),
        "the edge span carries the HTTP status the client got"
    );
    assert_eq!(
        hex(&edge.parent_span_id),
        client_span,
        "the edge continues the client's traceparent"
    );
    let grpc_client = find(
        "otus.catalog.v1.CatalogService/GetProduct",
        SpanKind::Client,
    );
    assert_eq!(
        hex(&grpc_client.parent_span_id),
        hex(&edge.span_id),
        "gRPC call made inside the edge span"
    );
    let grpc_server = find(
        "otus.catalog.v1.CatalogService/GetProduct",
        SpanKind::Server,
    );
    assert_eq!(
        hex(&grpc_server.parent_span_id),
        hex(&grpc_client.span_id),
        "the service continues the trace from gRPC metadata"
    );
    let sql = spans
        .iter()
        .find(|s| s.name.starts_with("sea_orm") && s.kind == SpanKind::Client as i32)
        .unwrap_or_else(|| panic!("no SQL span in {names:?}"));
    // The SQL span descends from the service's span.
    let mut cursor = hex(&sql.parent_span_id);
    let mut chain = vec![sql.name.clone()];
    while cursor != hex(&grpc_server.span_id) {
        let parent = by_id.get(&cursor).unwrap_or_else(|| {
            panic!("SQL span is not under the gRPC server span: {chain:?} in {names:?}")
        });
        chain.push(parent.name.clone());
        cursor = hex(&parent.parent_span_id);
    }
    let attrs: Vec<String> = sql.attributes.iter().map(|a| a.key.clone()).collect();
    assert!(
        attrs.iter().any(|k| k == "db.system"),
        "SQL span attributes: {attrs:?}"
    );
    eprintln!("trace {trace_id}: {names:?}");
}
