//! The layering of `src/`, held to ARCHITECTURE.md: each top-level module may import only the
//! modules its row of the code map names, the map's layers have no circle, and every module is on
//! the map. A new import that breaks the layering fails here with the file and the line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A source file: its path for messages, its module path (`["ingest", "api", "write"]`), its text.
type Source = (String, Vec<String>, String);

/// What a module may import, as the code map says.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Allowed {
    Nothing,
    Everything,
    These(BTreeSet<String>),
}

impl Allowed {
    fn allows(&self, module: &str) -> bool {
        match self {
            Allowed::Nothing => false,
            Allowed::Everything => true,
            Allowed::These(set) => set.contains(module),
        }
    }
}

/// The code map's table: `| \`module\` | may import |`.
fn code_map(architecture: &str) -> BTreeMap<String, Allowed> {
    let mut map = BTreeMap::new();
    let mut in_table = false;
    for line in architecture.lines() {
        if line.starts_with("| module | may import |") {
            in_table = true;
            continue;
        }
        if !in_table || line.starts_with("| ---") {
            continue;
        }
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let [module, allowed] = cells[..] else {
            panic!("a code map row has two cells: {line}");
        };
        let module = module.trim_matches('`').to_string();
        let allowed = match allowed {
            "nothing of the crate" => Allowed::Nothing,
            "everything" => Allowed::Everything,
            list => Allowed::These(
                list.split(',')
                    .map(|m| m.trim().trim_matches('`').to_string())
                    .collect(),
            ),
        };
        map.insert(module, allowed);
    }
    map
}

/// The top-level modules a source file names through `crate::` (grouped imports included) or
/// through enough `super::` to reach the crate's root, with the line of each. `module_path` is the
/// file's module path (`["ingest", "api", "write"]`).
fn references(source: &str, module_path: &[String]) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    for (number, line) in source.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            for name in first_segments(after) {
                found.push((name, number + 1));
            }
            rest = after;
        }
        let mut rest = code;
        while let Some(at) = rest.find("super::") {
            let before_ok = at == 0
                || !rest[..at]
                    .chars()
                    .last()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
            let mut after = &rest[at..];
            let mut depth = 0;
            while let Some(next) = after.strip_prefix("super::") {
                depth += 1;
                after = next;
            }
            if before_ok && depth >= module_path.len() {
                for name in first_segments(after) {
                    found.push((name, number + 1));
                }
            }
            rest = after;
        }
    }
    found
}

/// The first path segments of `text` (which follows `crate::`): one name, or each name at the top
/// of a `{…}` group.
fn first_segments(text: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let Some(group) = text.strip_prefix('{') else {
        let name = ident(text);
        return if name.is_empty() { vec![] } else { vec![name] };
    };
    let mut names = Vec::new();
    let mut depth = 0;
    let mut start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => start = true,
            c if c.is_whitespace() => {}
            _ if start && depth == 0 => {
                let name = ident(&group[i..]);
                if !name.is_empty() {
                    names.push(name);
                }
                start = false;
            }
            _ => {}
        }
    }
    names
}

/// Every `.rs` file under `dir`, with its module path; test-only files (`tests.rs`) left out.
fn sources(dir: &Path, path: &[String], out: &mut Vec<(PathBuf, Vec<String>)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for entry in entries {
        let name = entry.file_stem().unwrap().to_string_lossy().to_string();
        if entry.is_dir() {
            let mut inner = path.to_vec();
            inner.push(name);
            sources(&entry, &inner, out);
        } else if entry.extension().is_some_and(|e| e == "rs") && name != "tests" {
            let mut module = path.to_vec();
            if name != "mod" {
                module.push(name);
            }
            out.push((entry, module));
        }
    }
}

/// The imports of `files` that `map` does not allow, as `file:line: a imports b`.
fn violations(files: &[Source], map: &BTreeMap<String, Allowed>) -> Vec<String> {
    let mut wrong = Vec::new();
    for (file, module_path, source) in files {
        let Some(top) = module_path.first() else {
            continue;
        };
        // Unit tests may use what they like; the layering is about the shipped code.
        let shipped = source.split("#[cfg(test)]").next().unwrap_or_default();
        let Some(allowed) = map.get(top) else {
            wrong.push(format!(
                "{file}: module `{top}` is not on ARCHITECTURE.md's code map"
            ));
            continue;
        };
        for (target, line) in references(shipped, module_path) {
            let is_module = map.contains_key(&target);
            if target != *top && is_module && !allowed.allows(&target) {
                wrong.push(format!("{file}:{line}: `{top}` imports `{target}`"));
            }
        }
    }
    wrong
}

/// A module of the map that reaches itself through what the map allows.
fn circle(map: &BTreeMap<String, Allowed>) -> Option<Vec<String>> {
    fn visit(
        module: &str,
        map: &BTreeMap<String, Allowed>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|m| m == module) {
            let mut found = stack[at..].to_vec();
            found.push(module.to_string());
            return Some(found);
        }
        if !done.insert(module.to_string()) {
            return None;
        }
        stack.push(module.to_string());
        if let Some(Allowed::These(set)) = map.get(module) {
            for next in set {
                if let Some(found) = visit(next, map, stack, done) {
                    return Some(found);
                }
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    map.keys()
        .find_map(|m| visit(m, map, &mut Vec::new(), &mut done))
}

fn read_house() -> (BTreeMap<String, Allowed>, Vec<Source>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let map = code_map(&std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap());
    let mut found = Vec::new();
    sources(&root.join("src"), &[], &mut found);
    let files = found
        .into_iter()
        .filter(|(_, module)| !matches!(module.first().map(String::as_str), Some("main" | "lib")))
        .map(|(path, module)| {
            let source = std::fs::read_to_string(&path).unwrap();
            let shown = path.strip_prefix(root).unwrap().display().to_string();
            (shown, module, source)
        })
        .collect();
    (map, files)
}

#[test]
fn every_import_in_src_is_one_the_code_map_allows() {
    let (map, files) = read_house();
    assert!(map.len() >= 10, "the code map was not found: {map:?}");
    let wrong = violations(&files, &map);
    assert!(
        wrong.is_empty(),
        "imports ARCHITECTURE.md's code map does not allow (fix the import, or the map and its reasons):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_code_map_has_no_circle_and_names_only_modules_that_exist() {
    let (map, files) = read_house();
    assert_eq!(circle(&map), None, "the code map's layers form a circle");
    let modules: BTreeSet<&String> = files.iter().filter_map(|(_, m, _)| m.first()).collect();
    for (module, allowed) in &map {
        assert!(
            modules.contains(module),
            "the code map names `{module}`, which src/ does not have"
        );
        if let Allowed::These(set) = allowed {
            for target in set {
                assert!(
                    map.contains_key(target),
                    "`{module}` may import `{target}`, which the map does not list"
                );
            }
        }
    }
}

#[test]
fn the_check_catches_a_forbidden_import_in_every_spelling() {
    let map = code_map(
        "| module | may import |\n| --- | --- |\n| `store` | `interaction` |\n| `interaction` | nothing of the crate |\n| `ingest` | `store` |\n",
    );
    let file = |path: &str, source: &str| {
        let module: Vec<String> = path.split('/').map(str::to_string).collect();
        (path.to_string(), module, source.to_string())
    };
    let files = vec![
        file(
            "store/sqlite",
            "use crate::interaction::Fields;\nuse crate::ingest::state;\n",
        ),
        file(
            "store/clickhouse/rows",
            "use super::super::super::ingest::X;\n",
        ),
        file(
            "interaction/event",
            "use crate::{store::StoreError, ingest};\n",
        ),
        file(
            "interaction/kinds",
            "// crate::ingest in a comment\nfn f() { super::fields::g() }\n",
        ),
        file(
            "ingest/api",
            "use crate::store::Stores;\n#[cfg(test)]\nmod t { use crate::interaction::X; }\n",
        ),
    ];
    let wrong = violations(&files, &map);
    assert_eq!(
        wrong,
        [
            "store/sqlite:2: `store` imports `ingest`",
            "store/clickhouse/rows:1: `store` imports `ingest`",
            "interaction/event:1: `interaction` imports `store`",
            "interaction/event:1: `interaction` imports `ingest`",
        ]
    );
    let circular =
        code_map("| module | may import |\n| --- | --- |\n| `a` | `b` |\n| `b` | `a` |\n");
    assert_eq!(
        circle(&circular),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
}
