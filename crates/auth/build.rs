//! Tells the store tests which real servers are configured, so their
//! PostgreSQL and Redis variants show as "ignored, <reason>" in the test list
//! instead of passing silently when the variables are unset.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(otus_pg_tests)");
    println!("cargo::rustc-check-cfg=cfg(otus_redis_tests)");
    println!("cargo::rerun-if-env-changed=TEST_DATABASE_URL");
    println!("cargo::rerun-if-env-changed=TEST_REDIS_URL");
    println!("cargo::rerun-if-changed=build.rs");
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    if set("TEST_DATABASE_URL") {
        println!("cargo::rustc-cfg=otus_pg_tests");
    }
    if set("TEST_REDIS_URL") {
        println!("cargo::rustc-cfg=otus_redis_tests");
    }
}
