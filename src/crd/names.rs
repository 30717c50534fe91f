//! Names users and other components depend on: the API group, and every label, annotation,
//! finalizer and Secret key this project owns (all under [`PREFIX`]). They live beside the CRD so
//! that every component can use them without importing another's code.

pub const GROUP: &str = "mcp.coordinator.dev";
pub const VERSION: &str = "v1alpha1";
pub const KIND: &str = "MCPRegistration";
/// Prefix of every label, annotation and finalizer this project owns.
pub const PREFIX: &str = "mcp.coordinator.dev/";
pub const FINALIZER: &str = "mcp.coordinator.dev/cleanup";
pub const ROTATE_KEY_ANNOTATION: &str = "mcp.coordinator.dev/rotate-key";
pub const CREDENTIALS_LABEL: &str = "mcp.coordinator.dev/credentials";
pub const MCP_ID_LABEL: &str = "mcp.coordinator.dev/mcp-id";
/// Data key of the API key inside its Secret.
pub const SECRET_KEY: &str = "api-key";
/// Annotation on the key Secret recording which `rotate-key` value its key was issued for.
pub const ISSUED_FOR_ANNOTATION: &str = "mcp.coordinator.dev/issued-for-rotation";
/// Annotation on the key Secret telling the ingest server how long to keep this MCP's
/// interactions (`spec.privacy.retentionDays`).
pub const RETENTION_ANNOTATION: &str = "mcp.coordinator.dev/retention-days";
/// Annotation on the key Secret carrying `spec.privacy.level` to the ingest server.
pub const PRIVACY_LEVEL_ANNOTATION: &str = "mcp.coordinator.dev/privacy-level";
