# Multi-stage build: compile with the Rust toolchain, ship only the binary on a distroless base
# that runs as non-root (uid 65532). Build: make image
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY src ./src
COPY benches ./benches
COPY examples ./examples
COPY tests ./tests
RUN cargo build --release --locked --bin mcp-coordinator \
 && strip target/release/mcp-coordinator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/mcp-coordinator /usr/local/bin/mcp-coordinator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/mcp-coordinator"]
CMD ["--help"]
