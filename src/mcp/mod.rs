//! MCP as a client speaks it to a server, both protocol generations: the wire without I/O
//! (`wire.rs`) and one server reached over streamable HTTP (`client.rs`). The controller's `mcp`
//! probes and the gateway's side toward the MCPs both use it; it knows nothing of either.

pub mod client;
pub mod wire;
