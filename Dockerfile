# syntax=docker/dockerfile:1
# The `otus` binary (every subcommand: all-in-one, edge, users, migrate).
# Official images only: rust to build, debian slim to run, as a non-root user.
# protoc comes from the protoc-bin-vendored crate; TLS is rustls: the runtime
# needs no build tools and no OpenSSL.

FROM rust:1.95-slim-bookworm AS build
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
# 8000 REST (edge), 9000/9001 admin /metrics, 50051 gRPC (users).
EXPOSE 8000 9000 9001 50051
ENTRYPOINT ["/usr/local/bin/otus"]
CMD ["all-in-one"]
