//! Whom to trust, and for what. A Kubernetes object counts when the controller owns it, a request
//! when it authenticated: nothing is trusted by its label or its name.
//!
//! - `keys`: API keys and reader/admin tokens, held only as SHA-256 digests, compared in constant
//!   time, a rotated key kept for its grace period.
//! - `credentials` (pure): which key Secrets to trust, joining each with the registration that must
//!   own it; `watch` is its Kubernetes edge, applying what it trusts to the key rings.
//! - `gate` (pure): the checks a request passes before its body is read.
//! - `signing`: request signatures (HMAC over the request, keyed by the key's digest), replay window.
//! - `registrar_tokens`: who may self-register MCPs, and in which namespaces.
//!
//! The ingest API and the gateway both use it; it knows nothing of HTTP.

pub mod callers;
pub mod credentials;
pub mod gate;
pub mod keys;
pub mod limits;
pub mod oauth;
pub mod policy;
pub mod registrar_tokens;
pub mod signing;
pub mod watch;

pub use gate::Denied;
pub use keys::{KeyRing, ReaderTokens, Role};
