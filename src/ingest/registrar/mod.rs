//! Self-registration (the seed's `register_mcp`): an MCP outside the cluster, or without kubectl
//! rights, declares itself with a registrar token and gets its ID, API key and configuration back.
//! The message is translated here (`message`), the token says where it may register
//! (`crate::trust::registrar_tokens`),
//! and a port does the declaring: Kubernetes (`kubernetes`, with its own narrow identity) or
//! standalone mode's manifest directory.

pub mod endpoints;
pub mod kubernetes;
pub mod message;
pub mod preferences;
pub mod quantities;
pub mod refused;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::Semaphore;

pub use crate::trust::registrar_tokens::{Grant, RegistrarTokens};
pub use message::{Assigned, Declared, Refused};

#[derive(Debug, thiserror::Error)]
pub enum RegistrarError {
    /// The name is taken by a registration self-registration did not make, or is being deleted.
    #[error("{0}")]
    Conflict(String),
    /// The registry refused the registration (the API server's validation).
    #[error("{field}: {problem}")]
    Refused { field: String, problem: String },
    #[error("no self-registered MCP {0}")]
    NotFound(String),
    /// The registrar token holds as many registrations as it may.
    #[error("{0}")]
    Quota(String),
    /// The registry could not be reached or answered an error; trying again may work.
    #[error("the registry is unavailable: {0}")]
    Unavailable(String),
}

/// Where registrations are declared and their ID and key read back.
pub trait RegistrationPort: Send + Sync {
    /// Creates or updates the registration (marked as made by `registrar`) and waits until the
    /// registry assigned its ID and a key (a new one when `declared.rotate_key`). The caller bounds
    /// the wait. A name another registrar made is refused ([`RegistrarError::Conflict`]), and so
    /// is a new one past `cap` registrations of `registrar` in the namespace
    /// ([`RegistrarError::Quota`]).
    fn register<'a>(
        &'a self,
        declared: &'a Declared,
        registrar: &'a str,
        cap: usize,
    ) -> BoxFuture<'a, Result<Assigned, RegistrarError>>;

    /// Whether an MCP that gives no URL is reached through the Service of its registration's
    /// name (Kubernetes); without Services such a message is refused.
    fn has_services(&self) -> bool {
        false
    }

    /// Deletes a self-registered registration: its ID is retired, its key revoked.
    fn unregister<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), RegistrarError>>;
}

/// Self-registration as the ingest server offers it.
pub struct Registrar {
    pub tokens: Arc<RegistrarTokens>,
    pub port: Arc<dyn RegistrationPort>,
    /// How long a registration waits for its ID and key before answering "try again".
    pub wait: Duration,
    /// Registrations in progress at once; more are refused (each may wait `wait`).
    pub at_once: Arc<Semaphore>,
    /// Registrations one registrar token may hold in one namespace (`--registrar-max-registrations`).
    pub max_per_token: usize,
}

/// Registrations one registrar token may hold in one namespace, by default.
pub const DEFAULT_MAX_PER_TOKEN: usize = 100;

/// The refusal past the cap, in words a user can act on.
pub fn quota_refusal(registrar: &str, namespace: &str, cap: usize) -> RegistrarError {
    RegistrarError::Quota(format!(
        "registrar token {registrar} already holds its maximum of {cap} registrations in namespace {namespace}; unregister one (unregister_mcp), or ask the operator to raise --registrar-max-registrations"
    ))
}

/// The refusal of a name another registrar token made.
pub fn other_registrar(key: &str, owner: &str) -> RegistrarError {
    RegistrarError::Conflict(format!(
        "{key} was registered with another registrar token ({owner}); choose another name"
    ))
}

/// Registrations that may wait at once for their ID and key.
pub const REGISTRATIONS_AT_ONCE: usize = 16;

impl std::fmt::Debug for Registrar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registrar")
            .field("wait", &self.wait)
            .finish()
    }
}

impl Registrar {
    pub fn new(
        tokens: Arc<RegistrarTokens>,
        port: Arc<dyn RegistrationPort>,
        wait: Duration,
    ) -> Self {
        Self {
            tokens,
            port,
            wait,
            at_once: Arc::new(Semaphore::new(REGISTRATIONS_AT_ONCE)),
            max_per_token: DEFAULT_MAX_PER_TOKEN,
        }
    }

    /// The same, holding at most `max` registrations per token and namespace.
    pub fn with_max_per_token(mut self, max: usize) -> Self {
        self.max_per_token = max.max(1);
        self
    }
}
