//! The users service over gRPC directly: health, reflection, error details.

use futures::StreamExt as _;
use otus_identity::{Identity, IdentityKey};
use otus_proto::users::v1::{
    CreateUserRequest, DeleteUserRequest, GetUserRequest, User,
    users_service_client::UsersServiceClient,
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};
use tonic_types::StatusExt as _;

use crate::helpers::{Backend, TestApp, on_both_backends};

async fn channel(app: &TestApp) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{}", app.grpc))
        .expect("url")
        .connect()
        .await
        .expect("connect")
}

#[tokio::test]
async fn health_says_serving_for_the_users_and_auth_services() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let auth_channel = tonic::transport::Endpoint::from_shared(format!("http://{}", app.auth_grpc))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let checks = [
        (HealthClient::new(channel(&app).await), ""),
        (
            HealthClient::new(channel(&app).await),
            "otus.users.v1.UsersService",
        ),
        (HealthClient::new(auth_channel.clone()), ""),
        (HealthClient::new(auth_channel), "otus.auth.v1.AuthService"),
    ];
    for (mut health, service) in checks {
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

/// `grpcurl list` on each server: its own service and the standard ones,
/// nothing it would answer `unimplemented` for.
#[tokio::test]
async fn each_server_reflects_only_the_services_it_serves() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let standard = [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ];
    for (addr, own) in [
        (app.grpc, "otus.users.v1.UsersService"),
        (app.auth_grpc, "otus.auth.v1.AuthService"),
        (app.catalog_grpc, "otus.catalog.v1.CatalogService"),
    ] {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("url")
            .connect()
            .await
            .expect("connect");
        let mut client = ServerReflectionClient::new(channel);
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
        let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        names.sort();
        let mut want: Vec<String> = std::iter::once(own)
            .chain(standard)
            .map(str::to_owned)
            .collect();
        want.sort();
        assert_eq!(names, want, "the {own} server at {addr} lists");
    }
}

#[tokio::test]
async fn invalid_input_is_invalid_argument_with_a_machine_reason_and_field() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let mut users = UsersServiceClient::new(channel(&app).await);
    let mut req = tonic::Request::new(CreateUserRequest {
        user: Some(User {
            username: "grpc_user".into(),
            email: "not-an-email".into(),
            ..User::default()
        }),
        validate_only: false,
    });
    otus_identity::attach(&mut req, &app.mint(&Identity::auth_service()));
    let status = users
        .create_user(req)
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

on_both_backends!(the_users_service_rejects_direct_calls_without_a_valid_identity);

/// Calling the users service directly, around the edge: without a token, with
/// a forged one, or with another user's, nothing is readable or creatable.
async fn the_users_service_rejects_direct_calls_without_a_valid_identity(app: TestApp) {
    let victim = app.register(serde_json::json!({})).await;
    let other = app.register(serde_json::json!({})).await;
    let mut users = UsersServiceClient::new(channel(&app).await);
    let get = |token: Option<String>| {
        let mut req = tonic::Request::new(GetUserRequest { id: victim.id });
        if let Some(t) = token {
            otus_identity::attach(&mut req, &t);
        }
        req
    };

    let none = users.get_user(get(None)).await.expect_err("no token");
    assert_eq!(none.code(), tonic::Code::Unauthenticated);

    let forger = IdentityKey::new(&[42u8; 32]).expect("key");
    let forged = users
        .get_user(get(Some(forger.mint(&Identity::User(victim.id)))))
        .await
        .expect_err("forged token");
    assert_eq!(forged.code(), tonic::Code::Unauthenticated);

    let other_user = users
        .get_user(get(Some(app.mint(&Identity::User(other.id)))))
        .await
        .expect_err("another user's identity");
    assert_eq!(other_user.code(), tonic::Code::PermissionDenied);

    // A user identity cannot create users (only the auth service can).
    let mut create = tonic::Request::new(CreateUserRequest {
        user: Some(User {
            username: "sneaky".into(),
            email: "s@example.com".into(),
            ..User::default()
        }),
        validate_only: false,
    });
    otus_identity::attach(&mut create, &app.mint(&Identity::User(other.id)));
    let denied = users
        .create_user(create)
        .await
        .expect_err("user creating users");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);

    // The owner's identity works.
    let own = users
        .get_user(get(Some(app.mint(&Identity::User(victim.id)))))
        .await
        .expect("owner")
        .into_inner();
    assert_eq!(own.username, victim.username);
}

on_both_backends!(an_account_is_deleted_only_where_its_sessions_end);

/// Deleting one's profile directly at the users service would leave its
/// sessions (owned by auth) alive, answering `/me` with 404: it is refused
/// there, and `DELETE /user/{id}` (auth's DeleteAccount) ends them.
async fn an_account_is_deleted_only_where_its_sessions_end(app: TestApp) {
    let (user, token) = app.user_with_token().await;
    let mut users = UsersServiceClient::new(channel(&app).await);
    let mut delete = tonic::Request::new(DeleteUserRequest { id: user.id });
    otus_identity::attach(&mut delete, &app.mint(&Identity::User(user.id)));
    let denied = users
        .delete_user(delete)
        .await
        .expect_err("an owner deleting the profile around auth");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    assert_eq!(
        denied
            .get_error_details()
            .error_info()
            .map(|i| i.reason.as_str()),
        Some("DELETE_THROUGH_AUTH")
    );
    assert!(
        denied.message().contains("DeleteAccount"),
        "{}",
        denied.message()
    );
    // Nothing happened: the session and the profile are both there.
    assert_eq!(app.get("/me", Some(&token)).await.status(), 200);
    // The way that ends the sessions.
    let path = format!("/user/{}", user.id);
    assert_eq!(app.delete(&path, Some(&token)).await.status(), 204);
    assert_eq!(app.get("/me", Some(&token)).await.status(), 401);
}

/// Before the migrations ran, the service is alive ("" SERVING) but not ready
/// (its own name NOT_SERVING), so Kubernetes sends it no traffic yet.
#[tokio::test]
async fn a_service_is_not_ready_until_its_schema_exists() {
    let path =
        std::env::temp_dir().join(format!("otus-unmigrated-{}.sqlite", uuid::Uuid::new_v4()));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let db = otus_db::connect(&url, &otus_db::PoolSettings::default())
        .await
        .expect("connect");
    let shutdown = otus_telemetry::CancellationToken::new();
    let server = otus_users::serve(
        otus_users::serve::UsersDeps {
            db: otus_db::Db::always_up(db.clone()),
            key: IdentityKey::new(&[1u8; 32]).expect("key"),
        },
        &otus_grpc::Host::new(
            "127.0.0.1:0".parse().expect("addr"),
            otus_telemetry::Metrics::new(),
            shutdown.clone(),
        ),
    )
    .await
    .expect("serve");
    let addr = server.addr();
    tokio::spawn(server.run());
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let health = HealthClient::new(channel);
    let status = |service: &'static str| {
        let mut h = health.clone();
        async move {
            h.check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("check")
            .into_inner()
            .status
        }
    };
    assert_eq!(status("").await, ServingStatus::Serving as i32, "alive");
    assert_eq!(
        status("otus.users.v1.UsersService").await,
        ServingStatus::NotServing as i32,
        "not ready without its table"
    );
    shutdown.cancel();
    drop(db);
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

on_both_backends!(calls_reach_every_instance_behind_one_name);

/// Calls of one gRPC client reach each instance of a backend: two users
/// services on the same database, one name resolving to both (a headless
/// Service in Kubernetes), the edge's balanced channel in between.
async fn calls_reach_every_instance_behind_one_name(app: TestApp) {
    use std::{sync::Arc, time::Duration};

    // A second instance of the users service, with metrics of its own.
    let metrics_b = otus_telemetry::Metrics::new();
    let db = otus::connect_metered(
        &otus::config::DbArgs {
            database_url: app.database_url.clone(),
            database_max_connections: 4,
            database_acquire_timeout_ms: 3000,
        },
        &metrics_b,
    )
    .await
    .expect("database");
    let shutdown = otus_telemetry::CancellationToken::new();
    let server_b = otus_users::serve(
        otus_users::serve::UsersDeps {
            db,
            key: app.key.clone(),
        },
        &otus_grpc::Host::new(
            "127.0.0.1:0".parse().expect("addr"),
            metrics_b.clone(),
            shutdown.clone(),
        ),
    )
    .await
    .expect("second users service");
    let b = server_b.addr();
    tokio::spawn(server_b.run());

    // "users.test" resolves to both instances.
    let both = vec![app.grpc, b];
    let channel = otus_grpc::client::balance::Balanced::new(
        &format!("http://users.test:{}", app.grpc.port()),
        Duration::from_millis(50),
        Arc::new(move |_, _| {
            let both = both.clone();
            Box::pin(async move { Ok(both) })
        }),
    )
    .expect("channel");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while channel.addresses().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the name did not resolve"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let calls = |text: &str| -> f64 {
        text.lines()
            .filter(|l| {
                l.starts_with("grpc_server_handling_seconds_count")
                    && l.contains("grpc_method=\"GetUser\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let before_a = calls(&app.metrics().await);
    let user = app.register(serde_json::json!({})).await;
    let identity = Identity::User(user.id);
    let mut client = UsersServiceClient::new(channel);
    for _ in 0..20 {
        let mut req = tonic::Request::new(GetUserRequest { id: user.id });
        otus_identity::attach(&mut req, &app.mint(&identity));
        let got = client
            .get_user(req)
            .await
            .expect("GetUser through the balanced channel");
        assert_eq!(got.into_inner().id, user.id);
    }
    let (a_calls, b_calls) = (
        calls(&app.metrics().await) - before_a,
        calls(&metrics_b.render()),
    );
    assert_eq!(a_calls + b_calls, 20.0, "every call answered once");
    assert!(
        a_calls >= 5.0 && b_calls >= 5.0,
        "calls were not spread: {a_calls} on one instance, {b_calls} on the other"
    );
    shutdown.cancel();
}
