//! Compiles `proto/` (at the workspace root) into Rust with tonic-prost-build.
//!
//! protoc comes from the `protoc-bin-vendored` crate, so a build needs nothing
//! from the system. The descriptor set is written too: server reflection
//! serves it so grpcurl / `buf curl` can discover the API.

use std::{env, path::PathBuf};

/// Every .proto file, relative to the workspace `proto/` directory.
const PROTOS: &[&str] = &[
    "otus/users/v1/users.proto",
    "otus/auth/v1/auth.proto",
    "otus/catalog/v1/catalog.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");

    // Once any rerun-if-changed line is printed cargo watches only those, so
    // name the proto directory explicitly (TOOLCHAIN.md pitfalls).
    println!("cargo:rerun-if-changed={}", root.display());
    println!("cargo:rerun-if-changed=build.rs");

    if env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        #[expect(unsafe_code, reason = "set_var is unsafe in edition 2024")]
        // SAFETY: a build script runs on one thread; nothing reads the
        // environment concurrently.
        unsafe {
            env::set_var("PROTOC", protoc);
        }
    }

    let out = PathBuf::from(env::var("OUT_DIR")?);
    let files: Vec<PathBuf> = PROTOS.iter().map(|p| root.join(p)).collect();
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("otus_descriptor.bin"))
        .compile_protos(&files, &[root])?;
    Ok(())
}
