//! An in-process fake of the Kubernetes API server, for tests and benchmarks that cannot run a real
//! one. It speaks the real HTTP API over loopback — discovery, list (paginated) and watch (resume by
//! resourceVersion, 410 Gone once compacted), get/create/update/delete, JSON, merge and
//! server-side-apply patches, the status subresource, generation, finalizers, owner-reference
//! garbage collection, and CRD schema validation with pruning and defaulting — so kube-rs clients
//! and kubectl talk to it unchanged. Semantics follow the Kubernetes API documentation; where the
//! fake simplifies (no auth, no admission webhooks, lists are atomic under server-side apply),
//! it says so in the code.

pub mod resources;
pub use structural_schema as schema;
pub mod store;
pub mod util;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use warp::http::{Method, StatusCode};
use warp::Filter;

pub use store::{PatchKind, Store, WriteOptions};
pub use util::ApiError;

/// A running fake API server on a loopback port. Dropping it stops the server.
pub struct FakeApiServer {
    addr: SocketAddr,
    store: Arc<Store>,
    stop: Option<oneshot::Sender<()>>,
}

impl FakeApiServer {
    /// Starts on an ephemeral loopback port.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0".parse().map_err(std::io::Error::other)?).await
    }

    pub async fn start_on(addr: SocketAddr) -> std::io::Result<Self> {
        let store = Arc::new(Store::new());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let routes = routes(store.clone(), addr);
        tokio::spawn(
            warp::serve(routes)
                .incoming(listener)
                .graceful(async move {
                    let _ = stopped.await;
                })
                .run(),
        );
        Ok(Self {
            addr,
            store,
            stop: Some(stop),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// A kubeconfig that points kubectl or a kube client at this server.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
            self.url()
        )
    }

    /// Creates (or replaces) a CRD, so its resources are served from now on.
    pub fn install_crd(&self, crd: Value) -> Result<Value, ApiError> {
        let rt = self
            .store
            .find_type("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .ok_or_else(|| ApiError::bad_request("CRDs are not served"))?;
        let name = crd
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        match self
            .store
            .create(&rt, "", crd.clone(), &WriteOptions::default())
        {
            Err(e) if e.code == 409 => {
                let mut body = crd;
                body["metadata"]["resourceVersion"] =
                    self.store.get(&rt, "", &name)?["metadata"]["resourceVersion"].clone();
                self.store
                    .update(&rt, "", &name, body, false, &WriteOptions::default())
            }
            other => other,
        }
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

type Query = HashMap<String, String>;

fn routes(
    store: Arc<Store>,
    addr: SocketAddr,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection>
       + Clone
       + Send
       + Sync
       + 'static {
    warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::header::optional::<String>("accept"))
        .and(warp::body::bytes())
        .then(
            move |method: Method,
                  path: warp::path::FullPath,
                  query: String,
                  content_type: Option<String>,
                  accept: Option<String>,
                  body: Bytes| {
                let store = store.clone();
                async move {
                    while store.is_stalled() {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                    let query = parse_query(&query);
                    let request = Request {
                        method,
                        path: path.as_str().to_string(),
                        query,
                        content_type: content_type.unwrap_or_default(),
                        accept: accept.unwrap_or_default(),
                        body,
                    };
                    match handle(&store, addr, request).await {
                        Ok(response) => response,
                        Err(e) => error_response(&e),
                    }
                }
            },
        )
}

struct Request {
    method: Method,
    path: String,
    query: Query,
    content_type: String,
    accept: String,
    body: Bytes,
}

fn parse_query(raw: &str) -> Query {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_response(code: u16, body: &Value) -> warp::reply::Response {
    let mut response = warp::reply::Response::new(body.to_string().into());
    *response.status_mut() =
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        "content-type",
        warp::http::HeaderValue::from_static("application/json"),
    );
    response
}

fn error_response(e: &ApiError) -> warp::reply::Response {
    json_response(e.code, &e.status_body())
}

/// Where a request path points.
struct Target {
    rt: resources::ResourceType,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

/// `/openapi/v3`: where each group version's document is. kubectl reads it to learn whether the
/// server validates fields itself (it then sends `fieldValidation=Strict` instead of validating).
fn openapi_index(store: &Store) -> Value {
    let mut paths = serde_json::Map::new();
    for t in store.types() {
        let key = if t.group.is_empty() {
            format!("api/{}", t.version)
        } else {
            format!("apis/{}/{}", t.group, t.version)
        };
        paths.insert(
            key.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash=fake")}),
        );
    }
    json!({"paths": paths})
}

/// One group version's OpenAPI v3 document: each resource's item and collection paths, whose
/// write operations name their kind and accept `fieldValidation`, and the custom resources' schemas.
fn openapi_group_version(store: &Store, group: &str, version: &str) -> Value {
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    for t in store
        .types()
        .into_iter()
        .filter(|t| t.group == group && t.version == version)
    {
        let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
        let prefix = if t.group.is_empty() {
            format!("/api/{}", t.version)
        } else {
            format!("/apis/{}/{}", t.group, t.version)
        };
        let scope = if t.namespaced {
            "/namespaces/{namespace}"
        } else {
            ""
        };
        let operation = json!({
            "x-kubernetes-group-version-kind": gvk,
            "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}}],
            "responses": {"200": {"description": "OK"}},
        });
        paths.insert(
            format!("{prefix}{scope}/{}", t.plural),
            json!({"post": operation, "get": operation}),
        );
        paths.insert(
            format!("{prefix}{scope}/{}/{{name}}", t.plural),
            json!({"patch": operation, "put": operation, "get": operation}),
        );
        if let Some(schema) = &t.schema {
            let mut schema = schema.clone();
            schema["x-kubernetes-group-version-kind"] = json!([gvk]);
            schemas.insert(format!("{}.{}.{}", t.group, t.version, t.kind), schema);
        }
    }
    json!({"openapi": "3.0.0", "info": {"title": "fake", "version": "v1.32.0-fake"}, "paths": paths, "components": {"schemas": schemas}})
}

async fn handle(
    store: &Arc<Store>,
    addr: SocketAddr,
    req: Request,
) -> Result<warp::reply::Response, ApiError> {
    let segments: Vec<&str> = req
        .path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segments.as_slice() {
        ["version"] => {
            return Ok(json_response(
                200,
                &json!({"major": "1", "minor": "32", "gitVersion": "v1.32.0-fake", "platform": "linux/amd64"}),
            ))
        }
        ["api"] => {
            return Ok(json_response(
                200,
                &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr.to_string()}]}),
            ))
        }
        ["apis"] => return Ok(json_response(200, &group_list(store))),
        ["openapi", "v3"] => return Ok(json_response(200, &openapi_index(store))),
        ["openapi", "v3", "api", "v1"] => {
            return Ok(json_response(200, &openapi_group_version(store, "", "v1")))
        }
        ["openapi", "v3", "apis", group, version] => {
            return Ok(json_response(
                200,
                &openapi_group_version(store, group, version),
            ))
        }
        ["api", "v1"] => return Ok(json_response(200, &resource_list(store, "", "v1"))),
        ["apis", group, version] => {
            let list = resource_list(store, group, version);
            if list["resources"].as_array().is_none_or(|r| r.is_empty()) {
                return Err(ApiError::new(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                ));
            }
            return Ok(json_response(200, &list));
        }
        _ => {}
    }
    let (group, version, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => {
            return Err(ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ))
        }
    };
    let (namespace, plural, name, sub) = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if store
                .find_type(group, version, plural)
                .is_some_and(|t| t.namespaced) =>
        {
            (
                Some(ns.to_string()),
                *plural,
                tail.first().copied(),
                tail.get(1).copied(),
            )
        }
        [plural, tail @ ..] => (None, *plural, tail.first().copied(), tail.get(1).copied()),
        [] => {
            return Err(ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ))
        }
    };
    let rt = store.find_type(group, version, plural).ok_or_else(|| {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    })?;
    let status = match sub {
        None => false,
        Some("status") if rt.status_subresource => true,
        Some(other) => {
            return Err(ApiError::new(
                404,
                "NotFound",
                format!("the server could not find the requested resource ({other})"),
            ))
        }
    };
    let target = Target {
        rt,
        namespace,
        name: name.map(str::to_string),
        status,
    };
    dispatch(store, target, req).await
}

async fn dispatch(
    store: &Arc<Store>,
    t: Target,
    req: Request,
) -> Result<warp::reply::Response, ApiError> {
    let ns = t.namespace.clone().unwrap_or_default();
    let watching = req
        .query
        .get("watch")
        .is_some_and(|w| w == "true" || w == "1");
    let verb = match (&req.method, &t.name) {
        (&Method::GET, None) if watching => "watch",
        (&Method::GET, None) => "list",
        (&Method::GET, Some(_)) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, _) => "delete",
        _ => "other",
    };
    let resource = if t.status {
        format!("{}/status", t.rt.plural)
    } else {
        t.rt.plural.clone()
    };
    store.record_call(verb, &t.rt.group, &resource);
    if t.rt.namespaced && t.namespace.is_none() && !(req.method == Method::GET && t.name.is_none())
    {
        return Err(ApiError::new(
            404,
            "NotFound",
            "namespaced resources need a namespace in the path",
        ));
    }
    let opts = WriteOptions {
        field_manager: req.query.get("fieldManager").cloned(),
        force: req.query.get("force").is_some_and(|f| f == "true"),
        strict: req
            .query
            .get("fieldValidation")
            .is_some_and(|f| f == "Strict"),
    };
    let watch = req
        .query
        .get("watch")
        .is_some_and(|w| w == "true" || w == "1");
    match (&req.method, &t.name) {
        (&Method::GET, None) if watch => watch_response(store, &t, &req.query),
        (&Method::GET, None) => {
            let labels = util::parse_label_selector(
                req.query
                    .get("labelSelector")
                    .map(String::as_str)
                    .unwrap_or(""),
            )?;
            let fields = util::parse_field_selector(
                req.query
                    .get("fieldSelector")
                    .map(String::as_str)
                    .unwrap_or(""),
            )?;
            let limit = req.query.get("limit").and_then(|l| l.parse().ok());
            let list = store.list(
                &t.rt,
                t.namespace.as_deref(),
                &labels,
                &fields,
                limit,
                req.query.get("continue").map(String::as_str),
            )?;
            if req.accept.contains("as=Table") {
                return Ok(json_response(
                    200,
                    &table(
                        &t.rt,
                        list["items"].as_array().cloned().unwrap_or_default(),
                        &list["metadata"],
                    ),
                ));
            }
            Ok(json_response(200, &list))
        }
        (&Method::GET, Some(name)) => {
            let obj = store.get(&t.rt, &ns, name)?;
            if req.accept.contains("as=Table") {
                return Ok(json_response(200, &table(&t.rt, vec![obj], &json!({}))));
            }
            Ok(json_response(200, &obj))
        }
        (&Method::POST, None) => {
            let body = parse_body(&req)?;
            Ok(json_response(201, &store.create(&t.rt, &ns, body, &opts)?))
        }
        (&Method::PUT, Some(name)) => {
            let body = parse_body(&req)?;
            Ok(json_response(
                200,
                &store.update(&t.rt, &ns, name, body, t.status, &opts)?,
            ))
        }
        (&Method::PATCH, Some(name)) => {
            let kind = match req.content_type.split(';').next().unwrap_or("").trim() {
                "application/json-patch+json" => PatchKind::Json,
                "application/merge-patch+json" => PatchKind::Merge,
                "application/strategic-merge-patch+json" => PatchKind::Strategic,
                "application/apply-patch+yaml" | "application/apply-patch+cbor" => PatchKind::Apply,
                other => {
                    return Err(ApiError::new(
                        415,
                        "UnsupportedMediaType",
                        format!("the body of the request was in an unknown format ({other:?}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"),
                    ))
                }
            };
            let body = parse_body(&req)?;
            Ok(json_response(
                200,
                &store.patch(&t.rt, &ns, name, kind, body, t.status, &opts)?,
            ))
        }
        (&Method::DELETE, Some(name)) => {
            let options = if req.body.is_empty() {
                None
            } else {
                serde_json::from_slice::<Value>(&req.body).ok()
            };
            let preconditions = options.as_ref().and_then(|o| o.get("preconditions"));
            Ok(json_response(
                200,
                &store.delete(&t.rt, &ns, name, preconditions)?,
            ))
        }
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!(
                "the server does not allow this method on the requested resource ({})",
                req.method
            ),
        )),
    }
}

fn parse_body(req: &Request) -> Result<Value, ApiError> {
    serde_json::from_slice(&req.body).map_err(|e| {
        ApiError::bad_request(format!(
            "the request body is not valid JSON ({e}); the test API server accepts JSON bodies only"
        ))
    })
}

fn watch_response(
    store: &Arc<Store>,
    t: &Target,
    query: &Query,
) -> Result<warp::reply::Response, ApiError> {
    let labels =
        util::parse_label_selector(query.get("labelSelector").map(String::as_str).unwrap_or(""))?;
    let fields =
        util::parse_field_selector(query.get("fieldSelector").map(String::as_str).unwrap_or(""))?;
    let from = match query.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
        ),
    };
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(256);
    let rt = t.rt.clone();
    let namespace = t.namespace.clone();
    let matches = move |c: &store::Change| {
        c.type_id == rt.id()
            && namespace.as_ref().is_none_or(|ns| ns == &c.namespace)
            && util::labels_match(&labels, &c.object)
            && util::fields_match(&fields, &c.object)
    };
    let present_type = t.rt.clone();
    let line = move |event: &str, obj: &Value| {
        let mut text =
            json!({"type": event, "object": store::present(&present_type, obj)}).to_string();
        text.push('\n');
        Ok(Bytes::from(text))
    };
    match store.watch_from(&t.rt, from) {
        Err(e) if e.code == 410 => {
            // The API server reports an expired resourceVersion inside the watch stream.
            let mut text = json!({"type": "ERROR", "object": e.status_body()}).to_string();
            text.push('\n');
            let _ = tx.try_send(Ok(Bytes::from(text)));
        }
        Err(e) => return Err(e),
        Ok((backlog, mut live, start_rv)) => {
            let kind = t.rt.kind.clone();
            let api_version = t.rt.api_version();
            tokio::spawn(async move {
                let deadline = tokio::time::sleep(timeout);
                tokio::pin!(deadline);
                let mut last = from.unwrap_or(0);
                for change in backlog.iter().filter(|c| matches(c)) {
                    last = last.max(change.rv);
                    if tx.send(line(change.event, &change.object)).await.is_err() {
                        return;
                    }
                }
                last = last.max(start_rv);
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tokio::select! {
                        _ = &mut deadline => return,
                        _ = tx.closed() => return,
                        _ = tick.tick(), if bookmarks => {
                            let bookmark = json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": last.to_string()}}});
                            let mut text = bookmark.to_string();
                            text.push('\n');
                            if tx.send(Ok(Bytes::from(text))).await.is_err() {
                                return;
                            }
                        }
                        received = live.recv() => match received {
                            Ok(change) => {
                                if change.rv <= last {
                                    continue;
                                }
                                if matches(&change) {
                                    last = change.rv;
                                    if tx.send(line(change.event, &change.object)).await.is_err() {
                                        return;
                                    }
                                }
                            }
                            // A watcher that fell behind is closed; the client re-watches from its last rv.
                            Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
                        },
                    }
                }
            });
        }
    }
    let mut response = warp::Reply::into_response(warp::reply::stream(ReceiverStream::new(rx)));
    response.headers_mut().insert(
        "content-type",
        warp::http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn group_list(store: &Store) -> Value {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for t in store.types().into_iter().filter(|t| !t.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == t.group) {
            Some((_, versions)) if !versions.contains(&t.version) => {
                versions.push(t.version.clone())
            }
            Some(_) => {}
            None => groups.push((t.group.clone(), vec![t.version.clone()])),
        }
    }
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": groups.iter().map(|(g, vs)| json!({
            "name": g,
            "versions": vs.iter().map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v})).collect::<Vec<_>>(),
            "preferredVersion": {"groupVersion": format!("{g}/{}", vs[0]), "version": vs[0]},
        })).collect::<Vec<_>>(),
    })
}

fn resource_list(store: &Store, group: &str, version: &str) -> Value {
    let resources: Vec<Value> = store
        .types()
        .iter()
        .filter(|t| t.group == group && t.version == version)
        .flat_map(|t| t.discovery_entries())
        .collect();
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources})
}

/// The value a printer column's JSONPath picks: field steps (`.status.phase`) and the one filter
/// CRDs use for conditions (`.conditions[?(@.type=="Ready")]`).
fn printer_cell<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = obj;
    let mut rest = path;
    while !rest.is_empty() {
        rest = rest.strip_prefix('.').unwrap_or(rest);
        if let Some(filter) = rest.strip_prefix("[?(@.") {
            let (condition, after) = filter.split_once(")]")?;
            let (key, wanted) = condition.split_once("==")?;
            let wanted = wanted.trim_matches(|c| c == '"' || c == '\'');
            current = current
                .as_array()?
                .iter()
                .find(|item| item.get(key).and_then(Value::as_str) == Some(wanted))?;
            rest = after;
            continue;
        }
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        current = current.get(&rest[..end])?;
        rest = &rest[end..];
    }
    Some(current)
}

/// A `meta.k8s.io/v1` Table, as `kubectl get` asks for, with the CRD's printer columns.
fn table(rt: &resources::ResourceType, items: Vec<Value>, list_meta: &Value) -> Value {
    let mut columns =
        vec![json!({"name": "Name", "type": "string", "format": "name", "description": "Name"})];
    let mut paths = Vec::new();
    for c in &rt.printer_columns {
        let name = c.get("name").and_then(Value::as_str).unwrap_or("");
        if name == "Age" {
            continue;
        }
        columns.push(json!({"name": name, "type": c.get("type").cloned().unwrap_or(json!("string")), "format": "", "description": ""}));
        paths.push(
            c.get("jsonPath")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        );
    }
    columns.push(json!({"name": "Age", "type": "date", "format": "", "description": "Age"}));
    let rows: Vec<Value> = items
        .into_iter()
        .map(|obj| {
            let mut cells = vec![obj.pointer("/metadata/name").cloned().unwrap_or(Value::Null)];
            for p in &paths {
                cells.push(printer_cell(&obj, p).cloned().unwrap_or(json!("")));
            }
            cells.push(obj.pointer("/metadata/creationTimestamp").cloned().unwrap_or(Value::Null));
            json!({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"].clone()}})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "columnDefinitions": columns, "rows": rows})
}
