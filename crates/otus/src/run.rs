//! The one-service subcommands (`otus edge`, `users`, `auth`, `catalog`):
//! each parses its settings and composes its service in [`run_process`].

use crate::{
    config::{AuthArgs, CatalogArgs, EdgeArgs, UsersArgs},
    deps::{catalog_deps, connect_metered, redis, session_redis},
    jobs::migrate,
    process::{grpc, http, run_process},
};

/// `otus edge`.
pub async fn run_edge(args: EdgeArgs) -> anyhow::Result<()> {
    run_process(args.admin_addr, async |metrics, shutdown| {
        let cfg = args.http.edge_config(
            args.users_grpc_url.clone(),
            args.auth_grpc_url.clone(),
            args.catalog_grpc_url.clone(),
        )?;
        let router = otus_edge::router(&cfg, &metrics, shutdown.clone())?;
        let (addr, edge) = otus_edge::serve(
            args.http_addr,
            router,
            args.http.listener_limits(),
            &metrics,
            shutdown,
        )
        .await?;
        tracing::info!(http = %addr, users = %args.users_grpc_url, "edge listening");
        Ok(vec![http("edge HTTP", edge)])
    })
    .await
}

/// `otus users`.
pub async fn run_users(args: UsersArgs) -> anyhow::Result<()> {
    let key = args.identity.key()?;
    run_process(args.admin_addr, async |metrics, shutdown| {
        let db = connect_metered(&args.db, &metrics).await?;
        if args.migrate_on_start {
            migrate(db.connection()).await?;
        }
        let deps = otus_users::serve::UsersDeps { db, key };
        let users = otus_users::serve(
            deps,
            &otus_grpc::Host::new(args.grpc_addr, metrics, shutdown),
        )
        .await?;
        tracing::info!(grpc = %users.addr(), "users service listening");
        Ok(vec![grpc("users", users)])
    })
    .await
}

/// `otus auth`.
pub async fn run_auth(args: AuthArgs) -> anyhow::Result<()> {
    let key = args.identity.key()?;
    run_process(args.admin_addr, async |metrics, shutdown| {
        let deps = otus_auth::serve::AuthDeps {
            db: connect_metered(&args.db, &metrics).await?,
            redis: session_redis(
                &args.session_redis,
                &args.redis,
                redis(&args.redis).await?.as_ref(),
                None,
            )
            .await?,
            users: otus_grpc::client::channel(&metrics, &args.users_grpc_url)?,
            key,
            settings: args
                .auth
                .settings(std::time::Duration::from_millis(args.grpc_deadline_ms)),
        };
        let auth = otus_auth::serve(
            deps,
            &otus_grpc::Host::new(args.grpc_addr, metrics, shutdown),
        )
        .await?;
        tracing::info!(grpc = %auth.addr(), users = %args.users_grpc_url, "auth service listening");
        Ok(vec![grpc("auth", auth)])
    })
    .await
}

/// `otus catalog`.
pub async fn run_catalog(args: CatalogArgs) -> anyhow::Result<()> {
    run_process(args.admin_addr, async |metrics, shutdown| {
        let db = connect_metered(&args.db, &metrics).await?;
        let redis = redis(&args.redis).await?;
        let deps = catalog_deps(db, &args.cache, redis.as_ref());
        let catalog = otus_catalog::serve(deps, &otus_grpc::Host::new(args.grpc_addr, metrics, shutdown)).await?;
        tracing::info!(grpc = %catalog.addr(), cache = args.cache.cache_enabled, "catalog service listening");
        Ok(vec![grpc("catalog", catalog)])
    })
    .await
}
