//! Fixtures for mcp-coordinator's integration tests and benchmarks (dev only, never shipped):
//!
//! - `controller`: the test API server with the CRD installed, the controller in-process, waiting
//!   for a registration to reach a state;
//! - `fake_mcp`: a small HTTP MCP whose health can be switched;
//! - `ingest`: ingest servers as a process of the real binary or in this process;
//! - `clickhouse`: real ClickHouse servers (Debian's), one per test or a cluster with ZooKeeper;
//! - `cluster`: a real control plane (etcd, kube-apiserver, kube-controller-manager) on loopback;
//! - `dir`: one temporary-directory type; `http`: one HTTP client and free ports;
//! - `peers`: scripts of the official MCP SDKs run as processes;
//! - `build`: typed builders for registrations and interaction events, instead of YAML text.
//!
//! Tests name it `common` (`use test_support as common;`).

pub mod build;
pub mod clickhouse;
pub mod cluster;
pub mod controller;
pub mod dir;
pub mod fake_mcp;
pub mod http;
pub mod ingest;
pub mod peers;

pub use controller::*;
pub use dir::TestDir;
pub use fake_mcp::FakeMcp;
pub use http::{
    eventually, free_port, get_json_as, get_text, http_client, interactions, post_json, post_report,
};
