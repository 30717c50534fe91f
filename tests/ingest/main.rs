//! The ingest server: its HTTP API, bounds, the process, keys from Secrets, sensitive data,
//! signing, TLS, replicas, privacy, routing, self-registration, the seed's messages as written
//! and the parser under fuzzing.

mod api;
mod bounds;
mod connections;
mod fuzz_parser;
mod gateway;
mod otlp;
mod privacy;
mod process;
mod replicas;
mod routing;
mod secrets;
mod seed;
mod self_registration;
mod sensitive;
mod signing;
mod tls;
