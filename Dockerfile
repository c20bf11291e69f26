# syntax=docker/dockerfile:1
# The `otus` binary, every subcommand: the processes edge, users, auth, catalog
# (or all of them in one: all-in-one) and the jobs migrate and seed-products.
# Official images only: rust to build, debian slim to run, as a non-root user.
# protoc comes from the protoc-bin-vendored crate; TLS is rustls; jemalloc is
# linked in statically: the runtime needs no build tools and no OpenSSL.

FROM rust:1.95-slim-bookworm AS build
# make: jemalloc (the binary's allocator) is built from C by its crate; the
# slim image has gcc but not make.
RUN apt-get update \
 && apt-get install -y --no-install-recommends make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin otus \
 && cp target/release/otus /usr/local/bin/otus

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /data --create-home otus
COPY --from=build /usr/local/bin/otus /usr/local/bin/otus
USER 10001:10001
# The embedded SQLite default writes otus.sqlite here (all-in-one mode).
WORKDIR /data
# 8000 REST (edge); 50051 users, 50052 auth, 50053 catalog gRPC; 9000-9003 admin /metrics (9000 edge, 9001 users, 9002 auth, 9003 catalog).
EXPOSE 8000 9000 9001 9002 9003 50051 50052 50053
ENTRYPOINT ["/usr/local/bin/otus"]
CMD ["all-in-one"]
