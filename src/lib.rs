//! mcp-coordinator: a Kubernetes operator that coordinates MCP (Model Context Protocol) servers.
//! See DESIGN.md in the project's shared folder and the README for the architecture.

pub mod cli;
pub mod controller;
pub mod crd;
pub mod example_mcp;
pub mod ingest;
pub mod metrics;
pub mod privacy;
pub mod rbac;
pub mod routing;
pub mod server;
pub mod standalone;
pub mod store;

/// The coordinator's own version, checked against `spec.compatibility.coordinatorVersion`.
pub const COORDINATOR_VERSION: &str = env!("CARGO_PKG_VERSION");
