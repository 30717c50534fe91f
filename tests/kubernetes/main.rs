//! The Kubernetes side: the controller end to end against the test API server, leader election,
//! MCP probes, RBAC, the test API server's own contract, the CRD, kubectl and the binary.

mod binary;
mod controller;
mod crd;
mod fake_apiserver;
mod kubectl;
mod leader;
mod mcp_probe;
mod rbac;
mod real;
