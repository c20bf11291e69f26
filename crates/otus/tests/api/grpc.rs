//! The users service over gRPC directly: health, reflection, error details.

use futures::StreamExt as _;
use otus_proto::users::v1::{CreateUserRequest, User, users_service_client::UsersServiceClient};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};
use tonic_types::StatusExt as _;

use crate::helpers::{Backend, TestApp};

async fn channel(app: &TestApp) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{}", app.grpc))
        .expect("url")
        .connect()
        .await
        .expect("connect")
}

#[tokio::test]
async fn health_says_serving_for_the_server_and_the_users_service() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let mut health = HealthClient::new(channel(&app).await);
    for service in ["", "otus.users.v1.UsersService"] {
        let resp = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health check")
            .into_inner();
        assert_eq!(resp.status, ServingStatus::Serving as i32, "{service:?}");
    }
}

#[tokio::test]
async fn reflection_lists_the_users_and_health_services() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let mut client = ServerReflectionClient::new(channel(&app).await);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(futures::stream::iter([req]))
        .await
        .expect("reflection")
        .into_inner();
    let resp = stream.next().await.expect("one answer").expect("ok");
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected reflection answer: {resp:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in ["otus.users.v1.UsersService", "grpc.health.v1.Health"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not in {names:?}"
        );
    }
}

#[tokio::test]
async fn invalid_input_is_invalid_argument_with_a_machine_reason_and_field() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let mut users = UsersServiceClient::new(channel(&app).await);
    let status = users
        .create_user(CreateUserRequest {
            user: Some(User {
                username: "grpc_user".into(),
                email: "not-an-email".into(),
                ..User::default()
            }),
        })
        .await
        .expect_err("invalid email must be rejected");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let details = status.get_error_details();
    let info = details.error_info().expect("ErrorInfo detail");
    assert_eq!(info.reason, "INVALID_EMAIL");
    assert_eq!(info.domain, "users.otus");
    let bad = details.bad_request().expect("BadRequest detail");
    assert_eq!(bad.field_violations[0].field, "email");
}
