//! The interaction log's ingest server: HTTP API, authentication, the durable spool.

pub mod model;
pub mod parse;
