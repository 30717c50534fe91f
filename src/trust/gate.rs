//! The checks a request passes before its body is read: whose API key it carries, and which reads
//! its token allows. Pure: the HTTP layers (the ingest API, the gateway) call these and turn a
//! [`Denied`] into their own answer.

use super::keys::{bearer, KeyRing, ReaderTokens, Role};

/// Why a request was refused, with a message the caller can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No credential, or one nobody issued.
    #[error("{0}")]
    Unauthorized(String),
    /// A valid credential that does not allow this.
    #[error("{0}")]
    Forbidden(String),
}

/// The MCP whose API key this is.
pub fn authenticate(keys: &KeyRing, key: Option<&str>) -> Result<String, Denied> {
    let key = key.ok_or_else(|| {
        Denied::Unauthorized(
            "missing API key: send Authorization: Bearer <key> (or the api_key field)".into(),
        )
    })?;
    keys.mcp_for(key)
        .ok_or_else(|| Denied::Unauthorized("unknown API key".into()))
}

/// Who may read: admins and readers everything, an MCP's own key only that MCP's data (`mcp`).
pub fn authorize_reader(
    keys: &KeyRing,
    readers: &ReaderTokens,
    auth: Option<&str>,
    mcp: Option<&str>,
) -> Result<Role, Denied> {
    let Some(token) = bearer(auth) else {
        return Err(Denied::Unauthorized(
            "queries need a token: Authorization: Bearer <reader token, admin token or the MCP's own key>".into(),
        ));
    };
    if let Some(role) = readers.role(token) {
        return Ok(role);
    }
    match keys.mcp_for(token) {
        Some(own) if mcp == Some(own.as_str()) => Ok(Role::Mcp(own)),
        Some(own) => Err(Denied::Forbidden(format!(
            "the key of {own} may read only {own}'s own history and metrics"
        ))),
        None => Err(Denied::Unauthorized("unknown token".into())),
    }
}

/// Any known token: a reader, an admin or an MCP's key. `purpose` names what needs it
/// ("routes", "heartbeats") in the message.
pub fn any_token(
    keys: &KeyRing,
    readers: &ReaderTokens,
    auth: Option<&str>,
    purpose: &str,
) -> Result<(), Denied> {
    let token = bearer(auth).ok_or_else(|| {
        Denied::Unauthorized(format!(
            "{purpose} need a token: Authorization: Bearer <reader token, admin token or an MCP key>"
        ))
    })?;
    if readers.role(token).is_none() && keys.mcp_for(token).is_none() {
        return Err(Denied::Unauthorized("unknown token".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (KeyRing, ReaderTokens) {
        let keys = KeyRing::default();
        keys.set("ocr_text_001", "key-of-ocr-0123456789");
        let readers = ReaderTokens::from_tokens(["reader-token-0123456789"]);
        readers.add_admin("root", "admin-token-0123456789");
        (keys, readers)
    }

    #[test]
    fn an_api_key_names_its_mcp_and_nothing_else_passes() {
        let (keys, _) = keys();
        assert_eq!(
            authenticate(&keys, Some("key-of-ocr-0123456789")).unwrap(),
            "ocr_text_001"
        );
        assert!(matches!(
            authenticate(&keys, None),
            Err(Denied::Unauthorized(m)) if m.contains("Authorization: Bearer")
        ));
        assert!(matches!(
            authenticate(&keys, Some("reader-token-0123456789")),
            Err(Denied::Unauthorized(_))
        ));
    }

    #[test]
    fn an_mcp_key_reads_only_its_own_data_and_tokens_read_all() {
        let (keys, readers) = keys();
        let read =
            |auth: &str, mcp: Option<&str>| authorize_reader(&keys, &readers, Some(auth), mcp);
        assert_eq!(
            read("Bearer key-of-ocr-0123456789", Some("ocr_text_001")),
            Ok(Role::Mcp("ocr_text_001".into()))
        );
        assert!(matches!(
            read("Bearer key-of-ocr-0123456789", Some("other_mcp_001")),
            Err(Denied::Forbidden(m)) if m.contains("ocr_text_001")
        ));
        assert!(matches!(
            read("Bearer key-of-ocr-0123456789", None),
            Err(Denied::Forbidden(_))
        ));
        assert_eq!(
            read("Bearer reader-token-0123456789", None),
            Ok(Role::Reader("reader-0".into()))
        );
        assert_eq!(
            read("Bearer admin-token-0123456789", Some("ocr_text_001")),
            Ok(Role::Admin("root".into()))
        );
        assert!(matches!(
            read("Bearer nobody", None),
            Err(Denied::Unauthorized(_))
        ));
        assert!(matches!(
            authorize_reader(&keys, &readers, None, None),
            Err(Denied::Unauthorized(_))
        ));
    }

    #[test]
    fn any_issued_token_passes_and_names_the_purpose_when_missing() {
        let (keys, readers) = keys();
        for token in [
            "key-of-ocr-0123456789",
            "reader-token-0123456789",
            "admin-token-0123456789",
        ] {
            let auth = format!("Bearer {token}");
            assert_eq!(any_token(&keys, &readers, Some(&auth), "routes"), Ok(()));
        }
        assert!(matches!(
            any_token(&keys, &readers, None, "routes"),
            Err(Denied::Unauthorized(m)) if m.starts_with("routes need a token")
        ));
        assert!(matches!(
            any_token(&keys, &readers, Some("Bearer forged"), "routes"),
            Err(Denied::Unauthorized(_))
        ));
    }
}
