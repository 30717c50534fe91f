//! The Dockerfile (no Docker engine here, so its text): base images pinned to exact versions, a
//! Rust new enough for the crate, and a build context holding what the build reads and no more.

use std::path::Path;

fn read(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(name)).expect(name)
}

/// The default of `ARG name=...` in the Dockerfile.
fn arg_default(dockerfile: &str, name: &str) -> String {
    dockerfile
        .lines()
        .find_map(|l| l.strip_prefix(&format!("ARG {name}=")))
        .unwrap_or_else(|| panic!("no ARG {name}"))
        .to_string()
}

#[test]
fn the_image_builds_from_pinned_bases_with_a_rust_the_crate_accepts() {
    let dockerfile = read("Dockerfile");
    let rust = arg_default(&dockerfile, "RUST_IMAGE");
    let version = rust
        .strip_prefix("rust:")
        .and_then(|t| t.split('-').next())
        .expect("rust:<version>-...");
    let parts: Vec<u64> = version
        .split('.')
        .map(|p| p.parse().expect("numeric version"))
        .collect();
    assert_eq!(parts.len(), 3, "RUST_IMAGE pins an exact version: {rust}");
    let manifest = read("Cargo.toml");
    let needed: Vec<u64> = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("rust-version")
        .split('.')
        .map(|p| p.parse().expect("numeric"))
        .collect();
    assert!(
        parts[..2] >= needed[..2],
        "{rust} is older than rust-version {needed:?}"
    );
    let runtime = arg_default(&dockerfile, "RUNTIME_IMAGE");
    assert!(
        !runtime.ends_with(":latest") && runtime.contains(':'),
        "{runtime}"
    );
    for from in dockerfile.lines().filter(|l| l.starts_with("FROM ")) {
        assert!(from.contains("${"), "FROM uses the pinned ARGs: {from}");
    }
    for label in ["source", "version", "revision", "licenses"] {
        assert!(
            dockerfile.contains(&format!("org.opencontainers.image.{label}=")),
            "no OCI label {label}"
        );
    }
}

#[test]
fn the_build_context_holds_what_the_build_reads_and_nothing_else() {
    let dockerfile = read("Dockerfile");
    let ignored: Vec<String> = read(".dockerignore")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    let copied: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("COPY "))
        .filter(|l| !l.starts_with("--from"))
        .flat_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words[..words.len() - 1].to_vec()
        })
        .collect();
    for path in &copied {
        assert!(
            !ignored.iter().any(|i| i == path.trim_start_matches("./")),
            "{path} is copied but .dockerignore leaves it out"
        );
    }
    // Cargo refuses a manifest whose declared benches are missing: they must be in the image.
    let manifest = read("Cargo.toml");
    for bench in manifest
        .split("[[bench]]")
        .skip(1)
        .filter_map(|b| b.lines().find_map(|l| l.strip_prefix("name = \"")))
    {
        let name = bench.trim_end_matches('"');
        assert!(
            copied.contains(&"benches")
                && Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join(format!("benches/{name}.rs"))
                    .exists(),
            "bench {name} is not in the build context"
        );
    }
    for not_needed in ["tests", "examples", "charts"] {
        assert!(
            !copied
                .iter()
                .any(|c| c.trim_start_matches("./") == not_needed),
            "{not_needed} is copied into the build"
        );
    }
}
