//! What a scope offers: the union of its MCPs' tools, prompts and resources, and for each name
//! the MCPs a call may go to. Pure.
//!
//! A name offered by several MCPs with the same schema (a tool's `inputSchema`, a prompt's
//! `arguments`) is one entry whose calls are routed among them. When their schemas differ, the
//! bare name would be ambiguous: each variant is listed as `<registration>.<name>` instead, and
//! calls to it go to that MCP only. A resource URI listed by several MCPs is routed among them.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

/// The kinds of things a scope lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Tools,
    Prompts,
    Resources,
    ResourceTemplates,
}

impl Kind {
    pub fn of_list(method: &str) -> Option<Kind> {
        Some(match method {
            "tools/list" => Kind::Tools,
            "prompts/list" => Kind::Prompts,
            "resources/list" => Kind::Resources,
            "resources/templates/list" => Kind::ResourceTemplates,
            _ => return None,
        })
    }

    /// The kind a routed request addresses (`tools/call`, `prompts/get`, `resources/read`).
    pub fn of_call(method: &str) -> Option<Kind> {
        Some(match method {
            "tools/call" => Kind::Tools,
            "prompts/get" => Kind::Prompts,
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => Kind::Resources,
            _ => return None,
        })
    }

    pub fn list_method(self) -> &'static str {
        match self {
            Kind::Tools => "tools/list",
            Kind::Prompts => "prompts/list",
            Kind::Resources => "resources/list",
            Kind::ResourceTemplates => "resources/templates/list",
        }
    }

    /// The key of the list in a result.
    pub fn result_key(self) -> &'static str {
        match self {
            Kind::Tools => "tools",
            Kind::Prompts => "prompts",
            Kind::Resources => "resources",
            Kind::ResourceTemplates => "resourceTemplates",
        }
    }

    /// The key naming an entry (and, in a call, what it calls).
    pub fn id_key(self) -> &'static str {
        match self {
            Kind::Tools | Kind::Prompts => "name",
            Kind::Resources => "uri",
            Kind::ResourceTemplates => "uriTemplate",
        }
    }

    fn schema_key(self) -> Option<&'static str> {
        match self {
            Kind::Tools => Some("inputSchema"),
            Kind::Prompts => Some("arguments"),
            Kind::Resources | Kind::ResourceTemplates => None,
        }
    }
}

/// What one MCP listed.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    pub mcp_id: String,
    /// Its registration's name (qualifies conflicting names).
    pub registration: String,
    pub items: Vec<Value>,
}

/// Where a call to a listed name may go, and under which name the MCP knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub mcp_id: String,
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    /// The entries, as the scope lists them (ordered by name).
    pub items: Vec<Value>,
    pub routes: HashMap<String, Vec<Target>>,
}

/// The union of `listings` (in the order given, which decides whose description is shown).
pub fn merge(kind: Kind, listings: &[Listing]) -> Catalog {
    let id_key = kind.id_key();
    let mut groups: BTreeMap<String, Vec<(&Listing, &Value)>> = BTreeMap::new();
    for listing in listings {
        for item in &listing.items {
            if let Some(id) = item.get(id_key).and_then(Value::as_str) {
                let group = groups.entry(id.to_string()).or_default();
                // One MCP listing a name twice counts once.
                if !group.iter().any(|(l, _)| l.mcp_id == listing.mcp_id) {
                    group.push((listing, item));
                }
            }
        }
    }
    let mut catalog = Catalog::default();
    for (id, group) in groups {
        let schema = |item: &Value| kind.schema_key().and_then(|k| item.get(k)).cloned();
        let first = schema(group[0].1);
        let agree = group.iter().all(|(_, item)| schema(item) == first);
        if agree {
            catalog.items.push(group[0].1.clone());
            catalog.routes.insert(
                id.clone(),
                group
                    .iter()
                    .map(|(l, _)| Target {
                        mcp_id: l.mcp_id.clone(),
                        name: id.clone(),
                    })
                    .collect(),
            );
            continue;
        }
        for (listing, item) in group {
            let qualified = format!("{}.{id}", listing.registration);
            let mut item = item.clone();
            if let Value::Object(o) = &mut item {
                o.insert(id_key.into(), Value::String(qualified.clone()));
            }
            catalog.items.push(item);
            catalog.routes.insert(
                qualified,
                vec![Target {
                    mcp_id: listing.mcp_id.clone(),
                    name: id.clone(),
                }],
            );
        }
    }
    catalog.items.sort_by(|a, b| {
        a.get(id_key)
            .and_then(Value::as_str)
            .cmp(&b.get(id_key).and_then(Value::as_str))
    });
    catalog
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn listing(id: &str, registration: &str, items: Vec<Value>) -> Listing {
        Listing {
            mcp_id: id.into(),
            registration: registration.into(),
            items,
        }
    }

    fn tool(name: &str, schema: Value) -> Value {
        json!({"name": name, "description": format!("{name} tool"), "inputSchema": schema})
    }

    #[test]
    fn a_tool_offered_twice_with_one_schema_is_one_tool_routed_among_both() {
        let s = json!({"type": "object", "properties": {"image_url": {"type": "string"}}});
        let c = merge(
            Kind::Tools,
            &[
                listing(
                    "mcp-1",
                    "fast",
                    vec![tool("extract_text", s.clone()), tool("detect", s.clone())],
                ),
                listing("mcp-2", "slow", vec![tool("extract_text", s.clone())]),
            ],
        );
        let names: Vec<&str> = c
            .items
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["detect", "extract_text"]);
        let ids: Vec<&str> = c.routes["extract_text"]
            .iter()
            .map(|t| t.mcp_id.as_str())
            .collect();
        assert_eq!(ids, ["mcp-1", "mcp-2"]);
    }

    #[test]
    fn differing_schemas_are_listed_apart_under_their_registrations_name() {
        let c = merge(
            Kind::Tools,
            &[
                listing(
                    "mcp-1",
                    "fast",
                    vec![tool("extract_text", json!({"type": "object"}))],
                ),
                listing(
                    "mcp-2",
                    "v2",
                    vec![tool(
                        "extract_text",
                        json!({"type": "object", "required": ["lang"]}),
                    )],
                ),
            ],
        );
        let names: Vec<&str> = c
            .items
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["fast.extract_text", "v2.extract_text"]);
        assert!(
            !c.routes.contains_key("extract_text"),
            "the bare name is ambiguous"
        );
        assert_eq!(
            c.routes["v2.extract_text"],
            vec![Target {
                mcp_id: "mcp-2".into(),
                name: "extract_text".into()
            }]
        );
    }

    #[test]
    fn resources_are_keyed_by_uri() {
        let r = |uri: &str| json!({"uri": uri, "name": "doc"});
        let c = merge(
            Kind::Resources,
            &[
                listing("mcp-1", "a", vec![r("file:///a")]),
                listing("mcp-2", "b", vec![r("file:///a"), r("file:///b")]),
            ],
        );
        assert_eq!(c.items.len(), 2);
        assert_eq!(c.routes["file:///a"].len(), 2);
        assert_eq!(Kind::of_call("resources/read"), Some(Kind::Resources));
    }
}
