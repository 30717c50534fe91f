//! The object store and its API semantics: resourceVersion, generation, status subresource,
//! finalizers, owner-reference garbage collection, patches, server-side apply field ownership, and
//! the change log watches resume from.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::{json, Map, Value};
use tokio::sync::broadcast;

use crate::resources::{self, ResourceType};
use crate::schema;
use crate::util::{self, ApiError};

/// How many changes a watch can resume across before it gets 410 Gone.
const HISTORY_LIMIT: usize = 200_000;

#[derive(Debug, Clone)]
pub struct Change {
    pub rv: u64,
    pub type_id: String,
    pub namespace: String,
    pub event: &'static str,
    pub object: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

/// Options of a write request.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub field_manager: Option<String>,
    pub force: bool,
    pub strict: bool,
}

type ObjectKey = (String, String, String);
/// Field paths each (manager, is-status) owns through server-side apply.
type Ownership = HashMap<(String, bool), BTreeSet<Vec<String>>>;

struct Inner {
    types: Vec<ResourceType>,
    objects: HashMap<String, BTreeMap<(String, String), Value>>,
    rv: u64,
    history: VecDeque<Arc<Change>>,
    /// Watches may resume from any resourceVersion >= this.
    history_floor: u64,
    managed: HashMap<ObjectKey, Ownership>,
}

pub struct Store {
    inner: Mutex<Inner>,
    /// Every (verb, group, resource) clients used, for checking RBAC rules against real usage.
    calls: Mutex<BTreeMap<(String, String, String), u64>>,
    changes: broadcast::Sender<Arc<Change>>,
    /// While set, new requests wait (a test's way to make the API server stop answering).
    stalled: std::sync::atomic::AtomicBool,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    pub fn new() -> Self {
        let (changes, _) = broadcast::channel(65_536);
        Self {
            inner: Mutex::new(Inner {
                types: resources::builtins(),
                objects: HashMap::new(),
                rv: 1000,
                history: VecDeque::new(),
                history_floor: 0,
                managed: HashMap::new(),
            }),
            changes,
            stalled: std::sync::atomic::AtomicBool::new(false),
            calls: Mutex::default(),
        }
    }

    pub fn record_call(&self, verb: &str, group: &str, resource: &str) {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((verb.to_string(), group.to_string(), resource.to_string()))
            .and_modify(|n| *n += 1)
            .or_insert(1);
    }

    /// Makes new requests wait until `stall(false)` (requests already answered are not affected).
    pub fn stall(&self, stalled: bool) {
        self.stalled
            .store(stalled, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn is_stalled(&self) -> bool {
        self.stalled.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn clear_calls(&self) {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The (verb, API group, resource) triples clients have used so far, as RBAC names them.
    pub fn calls(&self) -> BTreeSet<(String, String, String)> {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// How many requests used `verb` on `resource` (as RBAC names it, e.g. `mcpregistrations/status`).
    pub fn call_count(&self, verb: &str, resource: &str) -> u64 {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|((v, _, r), _)| v == verb && r == resource)
            .map(|(_, n)| n)
            .sum()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn types(&self) -> Vec<ResourceType> {
        self.lock().types.clone()
    }

    pub fn find_type(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.lock()
            .types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    /// Forgets the change log, so every watch from an older resourceVersion gets 410 Gone,
    /// as after etcd compaction.
    pub fn compact(&self) {
        let mut inner = self.lock();
        inner.history.clear();
        inner.history_floor = inner.rv;
    }

    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
        let inner = self.lock();
        inner
            .objects
            .get(&rt.id())
            .and_then(|m| m.get(&(ns.to_string(), name.to_string())))
            .map(|o| present(rt, o))
            .ok_or_else(|| ApiError::not_found(&rt.plural, &rt.group, name))
    }

    /// Every object of a type (in all namespaces), for test assertions.
    pub fn all(&self, rt: &ResourceType) -> Vec<Value> {
        let inner = self.lock();
        inner
            .objects
            .get(&rt.id())
            .map(|m| m.values().map(|o| present(rt, o)).collect())
            .unwrap_or_default()
    }

    pub fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        labels: &[util::Requirement],
        fields: &[(String, bool, String)],
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<Value, ApiError> {
        let inner = self.lock();
        let (list_rv, after) = match continue_token.filter(|t| !t.is_empty()) {
            Some(token) => {
                let mut parts = token.splitn(3, '|');
                let rv = parts.next().and_then(|r| r.parse::<u64>().ok());
                let (Some(rv), Some(a), Some(b)) = (rv, parts.next(), parts.next()) else {
                    return Err(ApiError::bad_request(format!(
                        "invalid continue token {token:?}"
                    )));
                };
                (rv, Some((a.to_string(), b.to_string())))
            }
            None => (inner.rv, None),
        };
        let mut items = Vec::new();
        let mut more = false;
        if let Some(objects) = inner.objects.get(&rt.id()) {
            let range: Box<dyn Iterator<Item = (&(String, String), &Value)>> = match &after {
                Some(key) => Box::new(objects.range((
                    std::ops::Bound::Excluded(key.clone()),
                    std::ops::Bound::Unbounded,
                ))),
                None => Box::new(objects.iter()),
            };
            for (key, obj) in range {
                if ns.is_some_and(|n| n != key.0) {
                    continue;
                }
                if !util::labels_match(labels, obj) || !util::fields_match(fields, obj) {
                    continue;
                }
                if limit.is_some_and(|l| l > 0 && items.len() >= l) {
                    more = true;
                    break;
                }
                items.push(present(rt, obj));
            }
        }
        // The continue token must name the last returned key, not the first skipped one.
        let continue_value = more.then(|| {
            let last = items.last().cloned().unwrap_or(Value::Null);
            format!(
                "{list_rv}|{}|{}",
                last.pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
                last.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
            )
        });
        let mut metadata = json!({"resourceVersion": list_rv.to_string()});
        if let Some(c) = continue_value {
            metadata["continue"] = json!(c);
        }
        Ok(json!({
            "apiVersion": rt.api_version(),
            "kind": format!("{}List", rt.kind),
            "metadata": metadata,
            "items": items,
        }))
    }

    /// Changes after `from` (or synthetic ADDED events for every object when `from` is None),
    /// plus a receiver for the changes that follow, with no gap between the two.
    #[allow(clippy::type_complexity)]
    pub fn watch_from(
        &self,
        rt: &ResourceType,
        from: Option<u64>,
    ) -> Result<(Vec<Arc<Change>>, broadcast::Receiver<Arc<Change>>, u64), ApiError> {
        let inner = self.lock();
        let receiver = self.changes.subscribe();
        let id = rt.id();
        let backlog = match from {
            None => inner
                .objects
                .get(&id)
                .map(|m| {
                    m.iter()
                        .map(|((ns, _), o)| {
                            Arc::new(Change {
                                rv: inner.rv,
                                type_id: id.clone(),
                                namespace: ns.clone(),
                                event: "ADDED",
                                object: o.clone(),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default(),
            Some(rv) if rv < inner.history_floor => {
                return Err(ApiError::gone(format!(
                    "too old resource version: {rv} ({})",
                    inner.history_floor
                )));
            }
            Some(rv) => inner
                .history
                .iter()
                .filter(|c| c.rv > rv && c.type_id == id)
                .cloned()
                .collect(),
        };
        Ok((backlog, receiver, inner.rv))
    }

    pub fn create(
        &self,
        rt: &ResourceType,
        ns: &str,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let created = self.create_locked(&mut inner, rt, ns, body, opts)?;
        Ok(present(rt, &created))
    }

    fn create_locked(
        &self,
        inner: &mut Inner,
        rt: &ResourceType,
        ns: &str,
        mut body: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        check_type_meta(rt, &body)?;
        let Some(obj) = body.as_object_mut() else {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        };
        let meta = obj.entry("metadata").or_insert_with(|| json!({}));
        let Some(meta) = meta.as_object_mut() else {
            return Err(ApiError::bad_request("metadata must be an object"));
        };
        if let Some(body_ns) = meta.get("namespace").and_then(Value::as_str) {
            if rt.namespaced && body_ns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
        let name = match (
            meta.get("name").and_then(Value::as_str),
            meta.get("generateName").and_then(Value::as_str),
        ) {
            (Some(n), _) if !n.is_empty() => n.to_string(),
            (_, Some(prefix)) if !prefix.is_empty() => {
                let suffix = util::new_uid().replace('-', "");
                format!("{prefix}{}", &suffix[suffix.len() - 5..])
            }
            _ => {
                return Err(invalid(
                    rt,
                    "",
                    vec![schema::Cause {
                        reason: "FieldValueRequired",
                        field: "metadata.name".into(),
                        message: "Required value: name or generateName is required".into(),
                    }],
                ))
            }
        };
        if !util::valid_dns_subdomain(&name) {
            return Err(invalid(rt, &name, vec![schema::Cause {
                reason: "FieldValueInvalid",
                field: "metadata.name".into(),
                message: format!("Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"),
            }]));
        }
        let ns = if rt.namespaced {
            ns.to_string()
        } else {
            String::new()
        };
        if inner
            .objects
            .get(&rt.id())
            .is_some_and(|m| m.contains_key(&(ns.clone(), name.clone())))
        {
            return Err(ApiError::already_exists(&rt.plural, &rt.group, &name));
        }
        meta.insert("name".into(), json!(name));
        if rt.namespaced {
            meta.insert("namespace".into(), json!(ns));
        } else {
            meta.remove("namespace");
        }
        meta.insert("uid".into(), json!(util::new_uid()));
        meta.insert("creationTimestamp".into(), json!(util::now_rfc3339()));
        for system in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "resourceVersion",
            "selfLink",
        ] {
            meta.remove(system);
        }
        if rt.custom {
            meta.insert("generation".into(), json!(1));
        }
        if rt.status_subresource && rt.custom {
            obj.remove("status");
        }
        obj.insert("apiVersion".into(), json!(rt.api_version()));
        obj.insert("kind".into(), json!(rt.kind));
        admit(rt, &name, &mut body, opts)?;
        if rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions" {
            register_crd(inner, rt, &name, &mut body)?;
        }
        let stored = self.commit(inner, rt, &ns, &name, Some(body), "ADDED");
        Ok(stored.unwrap_or(Value::Null))
    }

    /// PUT of the object or its status. A body carrying a resourceVersion is a precondition.
    pub fn update(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        body: Value,
        status: bool,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        check_type_meta(rt, &body)?;
        if body
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .is_some_and(|n| n != name)
        {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        let mut inner = self.lock();
        let old = self.current(&inner, rt, ns, name)?;
        check_resource_version(rt, name, &old, &body)?;
        let result = self.finish_write(&mut inner, rt, ns, name, &old, body, status, opts)?;
        Ok(present(rt, &result))
    }

    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        kind: PatchKind,
        patch: Value,
        status: bool,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let ns_key = if rt.namespaced { ns } else { "" };
        let existing = inner
            .objects
            .get(&rt.id())
            .and_then(|m| m.get(&(ns_key.to_string(), name.to_string())))
            .cloned();
        let old = match existing {
            Some(o) => o,
            None if kind == PatchKind::Apply && !status => {
                let manager = required_manager(opts)?;
                let mut body = patch;
                if body.pointer("/metadata/name").is_none() {
                    body["metadata"]["name"] = json!(name);
                }
                let created = self.create_locked(&mut inner, rt, ns, body.clone(), opts)?;
                let mut fields = BTreeSet::new();
                leaf_paths(&body, &mut Vec::new(), &mut fields);
                let fields = scope_fields(rt, fields, false);
                inner
                    .managed
                    .entry(object_key(rt, ns_key, name))
                    .or_default()
                    .insert((manager, false), fields);
                return Ok(present(rt, &created));
            }
            None => return Err(ApiError::not_found(&rt.plural, &rt.group, name)),
        };
        let candidate = match kind {
            PatchKind::Merge => {
                let mut doc = old.clone();
                json_patch::merge(&mut doc, &patch);
                doc
            }
            PatchKind::Strategic if rt.custom => {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                ))
            }
            // Built-ins here have no list merge keys worth modelling; a merge patch is faithful enough.
            PatchKind::Strategic => {
                let mut doc = old.clone();
                json_patch::merge(&mut doc, &patch);
                doc
            }
            PatchKind::Json => {
                let ops: json_patch::Patch = serde_json::from_value(patch)
                    .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
                let mut doc = old.clone();
                json_patch::patch(&mut doc, &ops).map_err(|e| {
                    ApiError::new(422, "Invalid", format!("the server rejected our request due to an error in our request: {e}"))
                })?;
                doc
            }
            PatchKind::Apply => self.apply_fields(&mut inner, rt, ns_key, name, &old, &patch, status, opts)?,
        };
        // A patch that sets resourceVersion makes it a precondition, like an update.
        check_resource_version(rt, name, &old, &candidate)?;
        let result = self.finish_write(&mut inner, rt, ns, name, &old, candidate, status, opts)?;
        Ok(present(rt, &result))
    }

    /// Server-side apply: merge the applied configuration, drop fields this manager applied
    /// before but no longer does, and refuse (without force) to take fields another applier owns.
    #[allow(clippy::too_many_arguments)]
    fn apply_fields(
        &self,
        inner: &mut Inner,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        old: &Value,
        applied: &Value,
        status: bool,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let manager = required_manager(opts)?;
        if !applied.is_object() {
            return Err(ApiError::bad_request(
                "an apply patch must be a JSON object",
            ));
        }
        for field in ["apiVersion", "kind"] {
            if applied.get(field).and_then(Value::as_str).is_none() {
                return Err(ApiError::bad_request(format!(
                    "{field} must be set in an apply patch"
                )));
            }
        }
        let mut fields = BTreeSet::new();
        leaf_paths(applied, &mut Vec::new(), &mut fields);
        let fields = scope_fields(rt, fields, status);
        let key = object_key(rt, ns, name);
        let ownership = inner.managed.entry(key).or_default();
        let mut conflicts = Vec::new();
        for ((other, other_status), owned) in ownership.iter() {
            if *other == manager || *other_status != status {
                continue;
            }
            for path in fields.intersection(owned) {
                if get_path(old, path) != get_path(applied, path) {
                    conflicts.push((other.clone(), path.clone()));
                }
            }
        }
        if !conflicts.is_empty() && !opts.force {
            let list: Vec<String> = conflicts
                .iter()
                .map(|(m, p)| format!("conflict with \"{m}\": .{}", p.join(".")))
                .collect();
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Apply failed with {} conflict(s): {}",
                    conflicts.len(),
                    list.join(", ")
                ),
            ));
        }
        for (other, path) in &conflicts {
            if let Some(owned) = ownership.get_mut(&(other.clone(), status)) {
                owned.remove(path);
            }
        }
        let previous = ownership
            .get(&(manager.clone(), status))
            .cloned()
            .unwrap_or_default();
        let mut candidate = old.clone();
        for gone in previous.difference(&fields) {
            let still_owned = ownership
                .iter()
                .any(|((m, s), owned)| (m != &manager || *s != status) && owned.contains(gone));
            if !still_owned {
                remove_path(&mut candidate, gone);
            }
        }
        merge_applied(&mut candidate, applied);
        ownership.insert((manager, status), fields);
        Ok(candidate)
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_write(
        &self,
        inner: &mut Inner,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        old: &Value,
        mut candidate: Value,
        status: bool,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        if !candidate.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        if rt.status_subresource {
            if status {
                let mut next = old.clone();
                match candidate.get("status") {
                    Some(s) => next["status"] = s.clone(),
                    None => {
                        if let Some(o) = next.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
                candidate = next;
            } else if let Some(o) = candidate.as_object_mut() {
                match old.get("status") {
                    Some(s) => {
                        o.insert("status".into(), s.clone());
                    }
                    None => {
                        o.remove("status");
                    }
                }
            }
        }
        // System-owned metadata cannot be changed by clients.
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "name",
            "namespace",
        ] {
            match old.pointer(&format!("/metadata/{field}")) {
                Some(v) => candidate["metadata"][field] = v.clone(),
                None => {
                    if let Some(m) = candidate.get_mut("metadata").and_then(Value::as_object_mut) {
                        m.remove(field);
                    }
                }
            }
        }
        candidate["apiVersion"] = json!(rt.api_version());
        candidate["kind"] = json!(rt.kind);
        let deleting = old.pointer("/metadata/deletionTimestamp").is_some();
        if deleting {
            let before: HashSet<&str> = finalizers(old).into_iter().collect();
            if let Some(new) = finalizers(&candidate)
                .into_iter()
                .find(|f| !before.contains(f))
            {
                return Err(invalid(rt, name, vec![schema::Cause {
                    reason: "FieldValueForbidden",
                    field: "metadata.finalizers".into(),
                    message: format!("Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{\"{new}\"}}"),
                }]));
            }
        }
        admit(rt, name, &mut candidate, opts)?;
        if rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions" {
            register_crd(inner, rt, name, &mut candidate)?;
        }
        if rt.custom && without_meta_and_status(old) != without_meta_and_status(&candidate) {
            let generation = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            candidate["metadata"]["generation"] = json!(generation + 1);
        }
        let mut same = candidate.clone();
        same["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        if &same == old {
            return Ok(old.clone());
        }
        let ns_key = if rt.namespaced { ns } else { "" };
        let finished = deleting && finalizers(&candidate).is_empty();
        let stored = self.commit(inner, rt, ns_key, name, Some(candidate), "MODIFIED");
        if finished {
            let removed = self.commit(inner, rt, ns_key, name, None, "DELETED");
            self.collect_garbage(inner);
            return Ok(removed.unwrap_or(Value::Null));
        }
        Ok(stored.unwrap_or(Value::Null))
    }

    pub fn delete(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        preconditions: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let old = self.current(&inner, rt, ns, name)?;
        if let Some(pre) = preconditions {
            if let Some(uid) = pre.get("uid").and_then(Value::as_str) {
                if old.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid) {
                    return Err(ApiError::new(
                        409,
                        "Conflict",
                        format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {}", old.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("")),
                    ));
                }
            }
            if let Some(rv) = pre.get("resourceVersion").and_then(Value::as_str) {
                if old
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    != Some(rv)
                {
                    return Err(ApiError::conflict(&rt.plural, &rt.group, name));
                }
            }
        }
        let ns_key = if rt.namespaced { ns } else { "" };
        let result = self.delete_locked(&mut inner, rt, ns_key, name, old);
        self.collect_garbage(&mut inner);
        Ok(present(rt, &result))
    }

    fn delete_locked(
        &self,
        inner: &mut Inner,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        old: Value,
    ) -> Value {
        if !finalizers(&old).is_empty() {
            if old.pointer("/metadata/deletionTimestamp").is_some() {
                return old;
            }
            let mut marked = old;
            marked["metadata"]["deletionTimestamp"] = json!(util::now_rfc3339());
            marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            return self
                .commit(inner, rt, ns, name, Some(marked), "MODIFIED")
                .unwrap_or(Value::Null);
        }
        self.commit(inner, rt, ns, name, None, "DELETED")
            .unwrap_or(Value::Null)
    }

    /// Background-propagation garbage collection: deletes objects all of whose owners are gone.
    fn collect_garbage(&self, inner: &mut Inner) {
        loop {
            let live: HashSet<String> = inner
                .objects
                .values()
                .flat_map(|m| m.values())
                .filter_map(|o| {
                    o.pointer("/metadata/uid")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .collect();
            let mut orphans = Vec::new();
            for rt in &inner.types {
                if let Some(objects) = inner.objects.get(&rt.id()) {
                    for ((ns, name), obj) in objects {
                        if obj.pointer("/metadata/deletionTimestamp").is_some() {
                            continue;
                        }
                        let owners = obj
                            .pointer("/metadata/ownerReferences")
                            .and_then(Value::as_array)
                            .cloned()
                            .unwrap_or_default();
                        if !owners.is_empty()
                            && owners.iter().all(|o| {
                                o.get("uid")
                                    .and_then(Value::as_str)
                                    .is_none_or(|u| !live.contains(u))
                            })
                        {
                            orphans.push((rt.clone(), ns.clone(), name.clone(), obj.clone()));
                        }
                    }
                }
            }
            if orphans.is_empty() {
                return;
            }
            for (rt, ns, name, obj) in orphans {
                self.delete_locked(inner, &rt, &ns, &name, obj);
            }
        }
    }

    fn current(
        &self,
        inner: &Inner,
        rt: &ResourceType,
        ns: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        let ns = if rt.namespaced { ns } else { "" };
        inner
            .objects
            .get(&rt.id())
            .and_then(|m| m.get(&(ns.to_string(), name.to_string())))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.plural, &rt.group, name))
    }

    /// Stores (or removes) an object under a new resourceVersion and records the change.
    fn commit(
        &self,
        inner: &mut Inner,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        object: Option<Value>,
        event: &'static str,
    ) -> Option<Value> {
        inner.rv += 1;
        let rv = inner.rv;
        let key = (ns.to_string(), name.to_string());
        let objects = inner.objects.entry(rt.id()).or_default();
        let stored = match object {
            Some(mut o) => {
                o["metadata"]["resourceVersion"] = json!(rv.to_string());
                objects.insert(key, o.clone());
                o
            }
            None => {
                let mut o = objects.remove(&key)?;
                o["metadata"]["resourceVersion"] = json!(rv.to_string());
                inner.managed.remove(&object_key(rt, ns, name));
                o
            }
        };
        let change = Arc::new(Change {
            rv,
            type_id: rt.id(),
            namespace: ns.to_string(),
            event,
            object: stored.clone(),
        });
        inner.history.push_back(change.clone());
        while inner.history.len() > HISTORY_LIMIT {
            if let Some(dropped) = inner.history.pop_front() {
                inner.history_floor = dropped.rv;
            }
        }
        let _ = self.changes.send(change);
        Some(stored)
    }
}

/// A resourceVersion in a write is a precondition: it must be the stored one (409 otherwise).
fn check_resource_version(
    rt: &ResourceType,
    name: &str,
    stored: &Value,
    write: &Value,
) -> Result<(), ApiError> {
    let version = |v: &Value| {
        v.pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    match version(write) {
        Some(rv) if Some(&rv) != version(stored).as_ref() => {
            Err(ApiError::conflict(&rt.plural, &rt.group, name))
        }
        _ => Ok(()),
    }
}

fn required_manager(opts: &WriteOptions) -> Result<String, ApiError> {
    opts.field_manager
        .clone()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::bad_request("PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"))
}

fn object_key(rt: &ResourceType, ns: &str, name: &str) -> ObjectKey {
    (rt.id(), ns.to_string(), name.to_string())
}

/// The object as clients see it, with the apiVersion of the version they asked for.
pub fn present(rt: &ResourceType, obj: &Value) -> Value {
    let mut o = obj.clone();
    o["apiVersion"] = json!(rt.api_version());
    o["kind"] = json!(rt.kind);
    o
}

fn check_type_meta(rt: &ResourceType, body: &Value) -> Result<(), ApiError> {
    if let Some(kind) = body.get("kind").and_then(Value::as_str) {
        if kind != rt.kind {
            return Err(ApiError::bad_request(format!(
                "the kind of the body ({kind}) does not match the resource ({})",
                rt.kind
            )));
        }
    }
    if let Some(v) = body.get("apiVersion").and_then(Value::as_str) {
        let group = v.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        if group != rt.group {
            return Err(ApiError::bad_request(format!(
                "the apiVersion of the body ({v}) does not match the resource's group ({})",
                rt.group
            )));
        }
    }
    Ok(())
}

fn finalizers(obj: &Value) -> Vec<&str> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn without_meta_and_status(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    o
}

/// Pruning, defaulting and validation of a custom resource against its schema.
fn admit(
    rt: &ResourceType,
    name: &str,
    obj: &mut Value,
    opts: &WriteOptions,
) -> Result<(), ApiError> {
    let Some(schema) = rt.schema.as_ref().filter(|_| rt.custom) else {
        return Ok(());
    };
    let Some(map) = obj.as_object_mut() else {
        return Ok(());
    };
    let mut body = Value::Object(
        map.iter()
            .filter(|(k, _)| !matches!(k.as_str(), "apiVersion" | "kind" | "metadata"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Map<_, _>>(),
    );
    let mut pruned = Vec::new();
    schema::prune(schema, &mut body, "", &mut pruned);
    if opts.strict && !pruned.is_empty() {
        let fields: Vec<String> = pruned
            .iter()
            .map(|p| format!("unknown field \"{p}\""))
            .collect();
        return Err(ApiError::bad_request(format!(".{}", fields.join(", "))).with_details(json!({
            "causes": pruned.iter().map(|p| json!({"reason": "FieldValueInvalid", "message": format!("unknown field \"{p}\""), "field": p})).collect::<Vec<_>>()
        })));
    }
    schema::apply_defaults(schema, &mut body);
    let mut causes = Vec::new();
    schema::validate(schema, &body, "", &mut causes);
    if !causes.is_empty() {
        return Err(invalid(rt, name, causes));
    }
    map.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata"));
    if let Value::Object(validated) = body {
        map.extend(validated);
    }
    Ok(())
}

/// 422 Invalid, worded as the API server words it.
pub fn invalid(rt: &ResourceType, name: &str, causes: Vec<schema::Cause>) -> ApiError {
    let parts: Vec<String> = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    let joined = if parts.len() == 1 {
        parts[0].clone()
    } else {
        format!("[{}]", parts.join(", "))
    };
    let message = format!("{}.{} \"{name}\" is invalid: {joined}", rt.kind, rt.group);
    ApiError::new(422, "Invalid", message.replace(". \"", " \"")).with_details(json!({
        "name": name,
        "group": rt.group,
        "kind": rt.kind,
        "causes": causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect::<Vec<_>>(),
    }))
}

/// Serves the resource types a CRD declares and marks it Established, as the API server does.
fn register_crd(
    inner: &mut Inner,
    crd_type: &ResourceType,
    name: &str,
    crd: &mut Value,
) -> Result<(), ApiError> {
    let new_types = resources::from_crd(crd).map_err(|m| {
        invalid(
            crd_type,
            name,
            vec![schema::Cause {
                reason: "FieldValueRequired",
                field: m.clone(),
                message: m,
            }],
        )
    })?;
    let mut causes = Vec::new();
    for t in &new_types {
        match &t.schema {
            None => causes.push(schema::Cause {
                reason: "FieldValueRequired",
                field: format!("spec.versions[{}].schema.openAPIV3Schema", t.version),
                message: "Required value: schemas are required".into(),
            }),
            Some(s) => {
                for v in schema::structural_violations(s) {
                    causes.push(schema::Cause {
                        reason: "FieldValueInvalid",
                        field: format!("spec.validation.openAPIV3Schema ({})", t.version),
                        message: v,
                    });
                }
            }
        }
        let expected = format!("{}.{}", t.plural, t.group);
        if name != expected {
            causes.push(schema::Cause {
                reason: "FieldValueInvalid",
                field: "metadata.name".into(),
                message: format!(
                    "Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"
                ),
            });
        }
    }
    if !causes.is_empty() {
        return Err(invalid(crd_type, name, causes));
    }
    inner.types.retain(|t| {
        !(new_types
            .iter()
            .any(|n| n.group == t.group && n.plural == t.plural)
            && t.custom)
    });
    inner.types.extend(new_types);
    crd["status"] = json!({
        "acceptedNames": crd.pointer("/spec/names").cloned().unwrap_or(Value::Null),
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": util::now_rfc3339()},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": util::now_rfc3339()},
        ],
        "storedVersions": crd.pointer("/spec/versions").and_then(Value::as_array).map(|vs| vs.iter().filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true)).filter_map(|v| v.get("name").cloned()).collect::<Vec<_>>()).unwrap_or_default(),
    });
    Ok(())
}

/// Leaf field paths of an applied configuration: scalars, lists and empty objects.
fn leaf_paths(value: &Value, prefix: &mut Vec<String>, out: &mut BTreeSet<Vec<String>>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                prefix.push(k.clone());
                leaf_paths(v, prefix, out);
                prefix.pop();
            }
        }
        _ => {
            if !prefix.is_empty() {
                out.insert(prefix.clone());
            }
        }
    }
}

/// Apply owns only what the request may change: status on /status, the rest elsewhere;
/// identity fields are never owned.
fn scope_fields(
    rt: &ResourceType,
    fields: BTreeSet<Vec<String>>,
    status: bool,
) -> BTreeSet<Vec<String>> {
    fields
        .into_iter()
        .filter(|p| {
            let root = p[0].as_str();
            if matches!(root, "apiVersion" | "kind") {
                return false;
            }
            if root == "metadata" {
                return !status
                    && p.get(1).is_some_and(|f| {
                        matches!(
                            f.as_str(),
                            "labels" | "annotations" | "finalizers" | "ownerReferences"
                        )
                    });
            }
            if rt.status_subresource {
                (root == "status") == status
            } else {
                true
            }
        })
        .collect()
}

fn get_path<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, k| v.get(k))
}

fn remove_path(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cursor = value;
    for k in parents {
        match cursor.get_mut(k) {
            Some(next) => cursor = next,
            None => return,
        }
    }
    if let Some(map) = cursor.as_object_mut() {
        map.remove(last);
    }
}

fn merge_applied(target: &mut Value, applied: &Value) {
    match (target.as_object_mut(), applied.as_object()) {
        (Some(t), Some(a)) if !a.is_empty() => {
            for (k, v) in a {
                match t.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        merge_applied(existing, v)
                    }
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        _ => *target = applied.clone(),
    }
}
