# syntax=docker/dockerfile:1.7
# Multi-stage build: compile with the Rust toolchain, ship only the binary on a distroless base
# that runs as non-root (uid 65532). Build: make image (needs BuildKit, Docker's default builder).
#
# The base images are pinned to exact versions. To bump them: change RUST_IMAGE / RUNTIME_IMAGE
# (or pass them as --build-arg), and to pin by digest as well append `@sha256:...`, which
# `docker buildx imagetools inspect <image>` prints.
ARG RUST_IMAGE=rust:1.95.0-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# Only what the build reads: the manifests, the sources, and the benches the manifest names.
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY benches ./benches
COPY src ./src
# The registry and the target directory are BuildKit caches: a source change recompiles the
# crate, not its ~400 dependencies. The binary leaves the cache in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin mcp-coordinator \
 && install -D -s target/release/mcp-coordinator /out/mcp-coordinator

FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="mcp-coordinator" \
      org.opencontainers.image.description="Kubernetes operator that coordinates MCP (Model Context Protocol) servers" \
      org.opencontainers.image.source="https://github.com/mcp-coordinator/mcp-coordinator" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/mcp-coordinator /usr/local/bin/mcp-coordinator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/mcp-coordinator"]
CMD ["--help"]
