//! Names users and other components depend on: the API group, and every label, annotation,
//! finalizer and Secret key this project owns. They live beside the CRD so that every component
//! can use them without importing another's code, and each owned name is written once, under
//! [`PREFIX`].

pub const GROUP: &str = "mcp.coordinator.dev";
pub const VERSION: &str = "v1alpha1";
pub const KIND: &str = "MCPRegistration";
/// Prefix of every label, annotation and finalizer this project owns.
pub const PREFIX: &str = "mcp.coordinator.dev/";
/// Data key of the API key inside its Secret.
pub const SECRET_KEY: &str = "api-key";

/// `pub const NAME: &str = "mcp.coordinator.dev/<name>";` for each line.
macro_rules! owned_names {
    ($($(#[$doc:meta])* $name:ident = $suffix:literal;)*) => {
        $($(#[$doc])* pub const $name: &str = concat!("mcp.coordinator.dev/", $suffix);)*
    };
}

owned_names! {
    /// Finalizer of every registration: retires its ID and deletes its key first.
    FINALIZER = "cleanup";
    /// Annotation on a registration: a new value asks for a new API key.
    ROTATE_KEY_ANNOTATION = "rotate-key";
    /// Annotation on a registration made by self-registration (`register_mcp`): the registrar
    /// token's name. Self-registration changes and retires only registrations that carry it.
    REGISTERED_BY_ANNOTATION = "registered-by";
    /// Label on a registration made by self-registration: a digest of the registrar token's
    /// name (label values are short and plain), so the registrations of one token are counted
    /// with a selector (`--registrar-max-registrations`).
    REGISTRAR_LABEL = "registrar";
    /// Label (`true`) on the key Secrets the controller writes.
    CREDENTIALS_LABEL = "credentials";
    /// Label on a key Secret: the MCP ID its key belongs to.
    MCP_ID_LABEL = "mcp-id";
    /// Annotation on the key Secret recording which `rotate-key` value its key was issued for.
    ISSUED_FOR_ANNOTATION = "issued-for-rotation";
    /// Annotation on the key Secret telling the ingest server how long to keep this MCP's
    /// interactions (`spec.privacy.retentionDays`).
    RETENTION_ANNOTATION = "retention-days";
    /// Annotation on the key Secret carrying `spec.privacy.level` to the ingest server.
    PRIVACY_LEVEL_ANNOTATION = "privacy-level";
    /// Label (`true`) on Secrets holding a reader token (key `token`) for the ingest server.
    READER_TOKEN_LABEL = "reader-token";
    /// Label (`true`) on Secrets holding a gateway caller token (keys `token`, `namespaces`,
    /// optionally `capabilities`) for the ingest server's gateway.
    CALLER_TOKEN_LABEL = "caller-token";
    /// Label (`true`) a Secret needs before its values are sent as an MCP's probe headers.
    PROBE_HEADERS_LABEL = "probe-headers";
    /// Annotation on the ID ledger ConfigMap saying what it is for.
    PURPOSE_ANNOTATION = "purpose";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_names_carry_the_prefix() {
        assert!(PREFIX.starts_with(GROUP));
        for name in [
            FINALIZER,
            CREDENTIALS_LABEL,
            READER_TOKEN_LABEL,
            PURPOSE_ANNOTATION,
        ] {
            assert!(name.starts_with(PREFIX), "{name}");
        }
        assert_eq!(MCP_ID_LABEL, "mcp.coordinator.dev/mcp-id");
    }
}
