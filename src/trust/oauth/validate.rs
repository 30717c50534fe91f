//! A bearer JWT checked against one issuer's settings and keys, pure: the algorithm allowed, the
//! signature, `exp`/`nbf` within the clock skew, `iss`, and `aud` naming the resource the request
//! is for; then the caller it speaks for (its subject, and the namespaces its claims grant).

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde_json::Value;

use super::config::Issuer;
use crate::trust::callers::{Caller, Grant};

/// The longest token read (a JWT with many claims is a few KiB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a token is refused, as RFC 6750 names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    /// Not a token this gateway can accept (expired, forged, for another resource, …): 401
    /// `invalid_token`.
    #[error("{0}")]
    Invalid(String),
    /// Valid, but granting no namespace this request is for: 403 `insufficient_scope`.
    #[error("{0}")]
    Insufficient(String),
    /// The issuer's keys could not be had: 503, try again.
    #[error("{0}")]
    KeysUnavailable(String),
}

/// The token's header, without trusting anything it says yet.
pub fn header(token: &str) -> Result<Header, TokenRefusal> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenRefusal::Invalid(format!(
            "the token is {} bytes; at most {MAX_TOKEN_BYTES}",
            token.len()
        )));
    }
    jsonwebtoken::decode_header(token)
        .map_err(|e| TokenRefusal::Invalid(format!("not a signed JWT: {e}")))
}

/// The issuer a token names in its (unverified) payload, to pick whose keys check it.
pub fn claimed_issuer(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_string)
}

/// The key of `keys` that `header` names, if the set has it for an allowed algorithm.
pub fn key_for(keys: &JwkSet, header: &Header) -> Option<DecodingKey> {
    let jwk = match &header.kid {
        Some(kid) => keys.find(kid)?,
        // No `kid`: only a set of one key is unambiguous.
        None if keys.keys.len() == 1 => &keys.keys[0],
        None => return None,
    };
    DecodingKey::from_jwk(jwk).ok()
}

/// Checks `token` (whose `header` was read) with `key` for a request to `audiences` (the
/// resource URLs the request may be addressed as) of `namespace`; the caller it is.
pub fn caller(
    token: &str,
    header: &Header,
    key: &DecodingKey,
    issuer: &Issuer,
    audiences: &[String],
    namespace: &str,
) -> Result<Caller, TokenRefusal> {
    if !issuer.algorithms.contains(&header.alg) {
        return Err(TokenRefusal::Invalid(format!(
            "the token is signed with {:?}; this issuer's tokens must use one of {:?}",
            header.alg, issuer.algorithms
        )));
    }
    let mut validation = Validation::new(header.alg);
    validation.algorithms = vec![header.alg];
    validation.leeway = issuer.clock_skew_seconds;
    validation.validate_nbf = true;
    validation.set_issuer(&[&issuer.issuer]);
    validation.set_audience(audiences);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<Value>(token, key, &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        TokenRefusal::Invalid(match e.kind() {
            ErrorKind::ExpiredSignature => "the token has expired".to_string(),
            ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".to_string(),
            ErrorKind::InvalidAudience => format!(
                "the token is for another resource (aud); this request needs one of {audiences:?}"
            ),
            ErrorKind::InvalidIssuer => "the token's issuer (iss) is not this issuer".to_string(),
            ErrorKind::InvalidSignature => "the token's signature does not verify".to_string(),
            ErrorKind::MissingRequiredClaim(c) => format!("the token has no {c:?} claim"),
            _ => format!("the token is not valid: {e}"),
        })
    })?;
    let claims = data.claims;
    let subject = claims
        .get(&issuer.subject_claim)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= 256)
        .ok_or_else(|| {
            TokenRefusal::Invalid(format!(
                "the token has no usable {:?} claim (a string of 1–256 bytes)",
                issuer.subject_claim
            ))
        })?;
    let mut namespaces = issuer.namespaces.clone();
    if let Some(claim) = &issuer.namespaces_claim {
        match claims.get(claim) {
            Some(Value::Array(items)) => {
                namespaces.extend(items.iter().filter_map(Value::as_str).map(str::to_string))
            }
            Some(Value::String(s)) => namespaces.extend(s.split_whitespace().map(str::to_string)),
            _ => {}
        }
    }
    let groups = match claims.get(&issuer.groups_claim) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .take(256)
            .map(str::to_string)
            .collect(),
        Some(Value::String(s)) => s.split_whitespace().take(256).map(str::to_string).collect(),
        _ => Vec::new(),
    };
    let grant = Grant {
        namespaces,
        capabilities: Vec::new(),
        groups,
    };
    if !grant.allows_namespace(namespace) {
        return Err(TokenRefusal::Insufficient(format!(
            "the token of {subject:?} grants no access to namespace {namespace:?}"
        )));
    }
    Ok(Caller {
        name: format!("{}#{subject}", issuer.issuer),
        grant,
    })
}

/// The algorithms a JWKS key may be used with when an issuer names none: the asymmetric ones
/// authorization servers sign with (never `none`, never a shared secret).
pub fn default_algorithms() -> Vec<Algorithm> {
    vec![
        Algorithm::RS256,
        Algorithm::ES256,
        Algorithm::PS256,
        Algorithm::EdDSA,
    ]
}
