//! `POST /api/register`: the seed's `register_mcp` and `unregister_mcp` messages, with a registrar
//! token. The token is checked before the body is read; the wait for the ID and key is bounded,
//! and so is the number of registrations waiting at once.

use serde_json::{json, Value};
use warp::http::StatusCode;

use super::super::registrar::message::{self, RegisterMessage, UnregisterMessage};
use super::super::registrar::{Grant, Registrar, RegistrarError};
use super::super::state::IngestState;
use super::guards::parse_json;
use super::reply::{json_reply, ApiError, ErrorCode, Response};

/// The registrar a request's token speaks for, or why not.
pub fn grant<'a>(
    state: &'a IngestState,
    token: Option<&str>,
) -> Result<(&'a Registrar, Grant), ApiError> {
    let Some(registrar) = state.registrar.as_deref() else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "self-registration is not enabled on this coordinator (no --registrar-tokens-file); ask its operator, or apply an MCPRegistration",
        ));
    };
    let grant = token
        .and_then(|t| registrar.tokens.grant(t))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthorized,
                "register_mcp needs a registrar token: Authorization: Bearer <token>",
            )
        })?;
    Ok((registrar, grant))
}

fn refused(r: message::Refused) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidReport,
        format!("{}: {}", r.field, r.problem),
    )
    .with_field(r.field)
}

fn failed(e: RegistrarError) -> ApiError {
    match e {
        RegistrarError::Conflict(m) => ApiError::new(ErrorCode::Conflict, m),
        RegistrarError::Refused { field, problem } => refused(message::Refused { field, problem }),
        RegistrarError::NotFound(m) => {
            ApiError::new(ErrorCode::NotFound, format!("no self-registered MCP {m}"))
        }
        RegistrarError::Unavailable(m) => ApiError::new(ErrorCode::StoreUnavailable, m),
        RegistrarError::Quota(m) => ApiError::new(ErrorCode::Forbidden, m),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(body).map_err(|e| {
        let field = e.path().to_string();
        let problem = e.into_inner().to_string();
        refused(message::Refused {
            field: if field == "." { String::new() } else { field },
            problem,
        })
    })
}

/// Answers a registration message from the registrar `grant`.
pub async fn handle(
    registrar: &Registrar,
    grant: &Grant,
    body: &[u8],
) -> Result<Response, ApiError> {
    let body = parse_json(body)?;
    let action = body
        .get("action")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match action {
        "register_mcp" => register(registrar, grant, parse(body)?).await,
        "unregister_mcp" => unregister(registrar, grant, parse(body)?).await,
        other => Err(ApiError::new(
            ErrorCode::InvalidReport,
            format!("action: {other:?} is not a registration action; use register_mcp or unregister_mcp"),
        )
        .with_field("action")),
    }
}

fn forbidden(problem: String) -> ApiError {
    ApiError::new(ErrorCode::Forbidden, problem)
}

async fn register(
    registrar: &Registrar,
    grant: &Grant,
    message: RegisterMessage,
) -> Result<Response, ApiError> {
    let namespace = grant
        .namespace_for(message.mcp_info.namespace.as_deref())
        .map_err(forbidden)?;
    let services = registrar.port.has_services();
    let declared = message::declare(message, namespace, services).map_err(refused)?;
    let _slot = registrar.at_once.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            ErrorCode::Overloaded,
            "too many registrations in progress; retry shortly",
        )
    })?;
    let key = format!("{}/{}", declared.namespace, declared.name);
    let waited = tokio::time::timeout(
        registrar.wait,
        registrar
            .port
            .register(&declared, &grant.name, registrar.max_per_token),
    )
    .await;
    match waited {
        Ok(Ok(assigned)) => {
            tracing::info!(registration = %key, mcp_id = %assigned.mcp_id, registrar = %grant.name, "self-registered");
            Ok(json_reply(StatusCode::OK, &message::answer(&assigned, &declared.notes)))
        }
        Ok(Err(e)) => Err(failed(e)),
        Err(_) => Err(ApiError::new(
            ErrorCode::RegistrationPending,
            format!(
                "{key} is registered, but the coordinator assigned no ID and key within {}s (is the controller running?); send the same message again",
                registrar.wait.as_secs()
            ),
        )),
    }
}

async fn unregister(
    registrar: &Registrar,
    grant: &Grant,
    message: UnregisterMessage,
) -> Result<Response, ApiError> {
    let namespace = grant
        .namespace_for(message.namespace.as_deref())
        .map_err(forbidden)?;
    let name = message::registration_name(&message.name).map_err(|r| {
        refused(message::Refused {
            field: "name".into(),
            problem: r.problem,
        })
    })?;
    let done = tokio::time::timeout(registrar.wait, registrar.port.unregister(&namespace, &name))
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::RegistrationPending,
                "the registry did not answer in time; try again",
            )
        })?;
    done.map_err(failed)?;
    tracing::info!(registration = %format!("{namespace}/{name}"), registrar = %grant.name, "self-registration retired");
    Ok(json_reply(
        StatusCode::OK,
        &json!({"success": true, "retired": {"namespace": namespace, "name": name}}),
    ))
}
