use thiserror::Error;

/// Why a reconcile could not finish. Every variant is transient: the controller retries it with
/// backoff. Problems the user must fix (an invalid spec) are not errors: they become phase `Invalid`.
#[derive(Debug, Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("MCP ID allocation in ConfigMap {ledger} did not settle after {attempts} attempts (concurrent writers)")]
    IdLedgerContention { ledger: String, attempts: u32 },
    #[error("MCP ID ledger shard ConfigMap {ledger} would grow to {bytes} bytes, past what one object may hold; this many registrations share one name and type across namespaces: give new ones another name")]
    IdLedgerFull { ledger: String, bytes: usize },
    #[error("MCP ID ledger ConfigMap {ledger} holds an unreadable counter {key}={value:?}; fix or remove that entry")]
    IdLedgerCorrupt {
        ledger: String,
        key: String,
        value: String,
    },
    #[error(
        "the operating system's random number generator failed while generating an API key: {0}"
    )]
    Randomness(String),
    #[error("Secret {secret} already exists and is not owned by this MCPRegistration; rename or delete it so the controller can issue the API key there")]
    ForeignSecret { secret: String },
    #[error("MCPRegistration {0} has no namespace; it is a namespaced resource")]
    MissingNamespace(String),
    #[error("MCPRegistration {0} has no uid; the API server must assign one")]
    MissingUid(String),
}

impl Error {
    /// Short label for the `kind` dimension of the error metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(status)) if status.code == 409 => "conflict",
            Error::Kube(kube::Error::Api(_)) => "api",
            Error::Kube(_) => "transport",
            Error::IdLedgerContention { .. }
            | Error::IdLedgerCorrupt { .. }
            | Error::IdLedgerFull { .. } => "id_ledger",
            Error::Randomness(_) => "randomness",
            Error::ForeignSecret { .. } => "foreign_secret",
            Error::MissingNamespace(_) | Error::MissingUid(_) => "malformed_object",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
