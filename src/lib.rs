//! mcp-coordinator: a Kubernetes operator that coordinates MCP (Model Context Protocol) servers.
//! ARCHITECTURE.md at the repository's root is the map: what each module owns, what it may
//! import, and how reports, metrics and keys flow through them.

pub mod allocator;
pub mod api_client;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod example_mcp;
pub mod gateway;
pub mod ingest;
pub mod interaction;
pub mod mcp;
pub mod otlp;
pub mod pipeline;
pub mod privacy;
pub mod rbac;
pub mod routing;
pub mod serve;
pub mod standalone;
pub mod store;
pub mod telemetry;
#[cfg(test)]
#[allow(dead_code)] // the tests use only part of it
#[path = "../tests/support/src/dir.rs"]
mod test_dir;
pub mod trust;

/// The coordinator's own version, checked against `spec.compatibility.coordinatorVersion`.
pub const COORDINATOR_VERSION: &str = env!("CARGO_PKG_VERSION");
