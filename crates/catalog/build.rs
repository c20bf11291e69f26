//! Tells the cache tests whether a real Redis is configured, so the Redis
//! variant shows as "ignored, <reason>" in the test list instead of passing
//! silently when `TEST_REDIS_URL` is unset.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(otus_redis_tests)");
    println!("cargo::rerun-if-env-changed=TEST_REDIS_URL");
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var_os("TEST_REDIS_URL").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=otus_redis_tests");
    }
}
