//! Tells the integration tests whether PostgreSQL is configured, so the
//! PostgreSQL variants show as "ignored, <reason>" in the test list instead of
//! passing silently when `TEST_DATABASE_URL` is unset.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(otus_pg_tests)");
    println!("cargo::rerun-if-env-changed=TEST_DATABASE_URL");
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var_os("TEST_DATABASE_URL").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=otus_pg_tests");
    }
}
