//! Tells the integration tests what this machine can run, so tests that need
//! something missing show as "ignored, <reason>" in the test list instead of
//! passing silently: the PostgreSQL variants (`TEST_DATABASE_URL`) and the
//! Redis outage test (a `redis-server` binary on `PATH` to start and kill).

use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(otus_pg_tests)");
    println!("cargo::rustc-check-cfg=cfg(otus_redis_server)");
    println!("cargo::rerun-if-env-changed=TEST_DATABASE_URL");
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var_os("TEST_DATABASE_URL").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=otus_pg_tests");
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|dir| is_executable(&dir.join("redis-server"))) {
        println!("cargo::rustc-cfg=otus_redis_server");
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
