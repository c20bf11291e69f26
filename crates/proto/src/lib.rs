//! Generated protobuf messages and gRPC stubs for every otus-rs service.
//!
//! The sources live in `proto/` at the workspace root (linted by `buf lint`).
//! [`FILE_DESCRIPTOR_SET`] is what each server's reflection service serves.

/// `otus.users.v1`: the users service (profiles).
pub mod users {
    /// The port the users service answers gRPC on unless told otherwise
    /// (its listen address and every caller's default URL).
    pub const GRPC_PORT: u16 = 50051;

    /// Version 1 of the users API.
    pub mod v1 {
        // Generated code: lints that fire depend on the proto, so `expect` would
        // itself warn whenever none does.
        #![allow(clippy::all, clippy::pedantic)]
        tonic::include_proto!("otus.users.v1");
    }
}

/// `otus.auth.v1`: the auth service (credentials, sessions, identity).
pub mod auth {
    /// The port the auth service answers gRPC on unless told otherwise.
    pub const GRPC_PORT: u16 = 50052;

    /// Version 1 of the auth API.
    pub mod v1 {
        // Generated code: see `users::v1`.
        #![allow(clippy::all, clippy::pedantic)]
        tonic::include_proto!("otus.auth.v1");
    }
}

/// `otus.catalog.v1`: the catalog service (product search).
pub mod catalog {
    /// The port the catalog service answers gRPC on unless told otherwise.
    pub const GRPC_PORT: u16 = 50053;

    /// Response metadata (and, at the edge, the HTTP header) saying where a
    /// search answer came from: `HIT` (the cache) or `MISS` (computed).
    pub const CACHE_HEADER: &str = "x-cache";

    /// Version 1 of the catalog API.
    pub mod v1 {
        // Generated code: see `users::v1`.
        #![allow(clippy::all, clippy::pedantic)]
        tonic::include_proto!("otus.catalog.v1");
    }
}

pub mod user_fields;

/// Encoded `FileDescriptorSet` of every otus proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("otus_descriptor");
