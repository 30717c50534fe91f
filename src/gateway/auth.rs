//! Who is calling the gateway: a caller token (`trust::callers`), or, when the gateway is an
//! OAuth resource server (`--gateway-oauth-file`), a bearer JWT of a configured authorization
//! server (`trust::oauth`). Serves the RFC 9728 metadata each `/mcp/...` resource points to, and
//! answers 401 with a `WWW-Authenticate` challenge naming it, so an MCP client can discover where
//! to get a token.

use warp::http::{HeaderMap, HeaderValue, Method, StatusCode};
use warp::reply::Response;
use warp::Reply as _;

use super::edge::{refuse, scope_of};
use super::Gateway;
use crate::trust::callers::Caller;
use crate::trust::oauth::{OAuth, TokenRefusal};

/// The well-known prefix of protected-resource metadata (RFC 9728 §3).
const METADATA_PREFIX: &str = "/.well-known/oauth-protected-resource";

/// The metadata of the resource at `path` after the well-known prefix, when the gateway is a
/// resource server and `path` asks for it.
pub(super) fn metadata(gateway: &Gateway, method: &Method, path: &str) -> Option<Response> {
    let oauth = gateway.config.oauth.as_ref()?;
    let resource_path = path.strip_prefix(METADATA_PREFIX)?;
    if method != Method::GET {
        return Some(refuse(
            gateway,
            StatusCode::METHOD_NOT_ALLOWED,
            "method",
            "use GET",
        ));
    }
    let Some((namespace, capability)) = scope_of(resource_path) else {
        return Some(refuse(
            gateway,
            StatusCode::NOT_FOUND,
            "path",
            "metadata is served for /mcp/{namespace} and /mcp/{namespace}/{capability}",
        ));
    };
    let (resource, _) = oauth.config.audiences(&namespace, capability.as_deref());
    Some(warp::reply::json(&oauth.config.metadata(&resource)).into_response())
}

/// The caller of a request to `namespace` (and `capability`), or the answer refusing it.
pub(super) async fn authenticate(
    gateway: &Gateway,
    headers: &HeaderMap,
    namespace: &str,
    capability: Option<&str>,
) -> Result<Caller, Response> {
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
    let token = crate::trust::keys::bearer(authorization);
    if let Some(caller) = token.and_then(|t| gateway.callers.caller(t)) {
        return Ok(caller);
    }
    let Some(oauth) = &gateway.config.oauth else {
        return Err(refuse(gateway, StatusCode::UNAUTHORIZED, "unauthenticated", "send a caller token: Authorization: Bearer <token> (standalone mode keeps one in <data-dir>/caller.token)"));
    };
    let challenge = |error: Option<(&str, &str)>| challenge(oauth, namespace, capability, error);
    let Some(token) = token.filter(|t| OAuth::looks_like_jwt(t)) else {
        let mut response = refuse(
            gateway,
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "send a bearer token of an authorization server this gateway names (see WWW-Authenticate: resource_metadata), or a caller token",
        );
        set_challenge(&mut response, challenge(None));
        return Err(response);
    };
    match oauth.authenticate(token, namespace, capability).await {
        Ok(caller) => Ok(caller),
        Err(TokenRefusal::Invalid(why)) => {
            let mut response = refuse(gateway, StatusCode::UNAUTHORIZED, "invalid_token", &why);
            set_challenge(&mut response, challenge(Some(("invalid_token", &why))));
            Err(response)
        }
        Err(TokenRefusal::Insufficient(why)) => {
            let mut response = refuse(gateway, StatusCode::FORBIDDEN, "insufficient_scope", &why);
            set_challenge(&mut response, challenge(Some(("insufficient_scope", &why))));
            Err(response)
        }
        Err(TokenRefusal::KeysUnavailable(why)) => Err(refuse(
            gateway,
            StatusCode::SERVICE_UNAVAILABLE,
            "keys_unavailable",
            &format!("cannot check the token now: {why}"),
        )),
    }
}

/// `Bearer resource_metadata="…"`, with the error when a token was refused (RFC 6750 §3,
/// RFC 9728 §5.1).
fn challenge(
    oauth: &OAuth,
    namespace: &str,
    capability: Option<&str>,
    error: Option<(&str, &str)>,
) -> String {
    let (resource, _) = oauth.config.audiences(namespace, capability);
    let mut value = format!(
        "Bearer resource_metadata=\"{}\"",
        oauth.config.metadata_url(&resource)
    );
    if let Some((code, description)) = error {
        // A quoted string may not hold `"` or `\`; control characters are not headers' either.
        let description: String = description
            .chars()
            .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
            .take(300)
            .collect();
        value.push_str(&format!(
            ", error=\"{code}\", error_description=\"{description}\""
        ));
    }
    value
}

fn set_challenge(response: &mut Response, value: String) {
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().insert("www-authenticate", value);
    }
}
