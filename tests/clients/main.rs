//! What runs beside the coordinator: the Python and Rust clients, standalone mode, Prometheus.

mod gateway;
mod gateway_oauth;
mod gateway_policy;
mod otlp;
mod prometheus;
mod python_client;
mod rust_client;
mod standalone;
