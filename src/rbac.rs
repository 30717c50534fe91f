//! Every Kubernetes API call the binaries make, as RBAC rules. The Helm chart's roles are checked
//! against this list, and the tests check that the code makes no call outside it.

/// One permission: API group, resource (with `/status` for the subresource), verbs, and who needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiPermission {
    pub group: &'static str,
    pub resource: &'static str,
    pub verbs: &'static [&'static str],
    pub component: &'static str,
    pub why: &'static str,
}

pub const API_CALLS: &[ApiPermission] = &[
    ApiPermission {
        group: "mcp.coordinator.dev",
        resource: "mcpregistrations",
        verbs: &["get", "list", "watch", "patch"],
        component: "controller",
        why: "watch registrations; add and remove the finalizer",
    },
    ApiPermission {
        group: "mcp.coordinator.dev",
        resource: "mcpregistrations/status",
        verbs: &["patch"],
        component: "controller",
        why: "write status (server-side apply)",
    },
    ApiPermission {
        group: "",
        resource: "secrets",
        verbs: &["get", "list", "watch", "create", "update", "delete"],
        component: "controller",
        why: "own the API key Secrets; read probe headers (headersFromSecret)",
    },
    ApiPermission {
        group: "",
        resource: "configmaps",
        verbs: &["get", "create", "update"],
        component: "controller",
        why: "the MCP ID ledger in the state namespace",
    },
    ApiPermission {
        group: "",
        resource: "configmaps",
        verbs: &["patch"],
        component: "controller",
        why: "the mcp-routing-table ConfigMap of every namespace with registrations (server-side apply)",
    },
    ApiPermission {
        group: "coordination.k8s.io",
        resource: "leases",
        verbs: &["get", "create", "update"],
        component: "controller",
        why: "leader election among replicas (--leader-elect), in the state namespace",
    },
    ApiPermission {
        group: "events.k8s.io",
        resource: "events",
        verbs: &["create"],
        component: "controller",
        why: "Events on registration transitions (each its own Event)",
    },
    ApiPermission {
        group: "mcp.coordinator.dev",
        resource: "mcpregistrations",
        verbs: &["list", "watch"],
        component: "ingest",
        why: "trust an MCP key only from a Secret its registration owns (--keys-from-secrets); route candidates from the registrations (--routes-from-registrations)",
    },
    ApiPermission {
        group: "",
        resource: "secrets",
        verbs: &["list", "watch"],
        component: "ingest",
        why: "API keys, reader tokens and gateway caller tokens from labelled Secrets (--keys-from-secrets); the headers the gateway sends each MCP, from its opted-in headersFromSecret (--routes-from-registrations)",
    },
    ApiPermission {
        group: "mcp.coordinator.dev",
        resource: "mcpregistrations",
        verbs: &["get", "list", "create", "update", "delete"],
        component: "registrar",
        why: "self-registration (register_mcp, registrar.enabled): declare, update and retire the registrations it made, and count those of one registrar token (--registrar-max-registrations), in registrar.namespaces only",
    },
    ApiPermission {
        group: "",
        resource: "secrets",
        verbs: &["get"],
        component: "registrar",
        why: "self-registration: read back the key of the registration it made (trusted only when that registration owns the Secret)",
    },
];

/// Whether `component` may `verb` the `resource` of `group`.
pub fn allowed(component: &str, verb: &str, group: &str, resource: &str) -> bool {
    API_CALLS.iter().any(|p| {
        p.component == component
            && p.group == group
            && p.resource == resource
            && p.verbs.contains(&verb)
    })
}
