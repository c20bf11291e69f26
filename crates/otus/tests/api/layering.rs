//! The crates' layering, as `docs/architecture.md` draws it: every
//! dependency points from the binary to the services (and the edge) to the
//! shared crates, never sideways between services or upwards; and inside the
//! edge, module imports have no circle.

use std::collections::{BTreeMap, BTreeSet};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `crate name -> layer` from the architecture page's crate table.
fn documented_layers() -> BTreeMap<String, String> {
    let page = read("docs/architecture.md");
    page.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            // | `name` (...) | layer | owns |
            let name = cells.get(1)?.strip_prefix('`')?.split('`').next()?;
            let layer = *cells.get(2)?;
            ["binary", "service", "shared"]
                .contains(&layer)
                .then(|| (name.to_owned(), layer.to_owned()))
        })
        .collect()
}

/// `crate name -> the workspace crates it depends on` (normal dependencies).
fn manifest_dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(format!("{ROOT}/crates")).expect("crates/") {
        let dir = entry.expect("entry").path();
        let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        let name = manifest
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .and_then(|n| n.strip_suffix('"'))
            .expect("package name")
            .to_owned();
        let mut deps = BTreeSet::new();
        let mut in_deps = false;
        for line in manifest.lines() {
            if line.starts_with('[') {
                in_deps = line == "[dependencies]";
            } else if in_deps && line.starts_with("otus") {
                let dep: String = line
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                deps.insert(dep);
            }
        }
        out.insert(name, deps);
    }
    out
}

fn rank(layer: &str) -> u8 {
    match layer {
        "binary" => 2,
        "service" => 1,
        _ => 0,
    }
}

#[test]
fn every_crate_dependency_points_down_a_layer() {
    let layers = documented_layers();
    let deps = manifest_dependencies();
    assert!(deps.len() >= 10, "read too few manifests: {deps:?}");
    for (name, uses) in &deps {
        let layer = layers
            .get(name)
            .unwrap_or_else(|| panic!("docs/architecture.md has no row for {name}"));
        for dep in uses {
            let dep_layer = layers
                .get(dep)
                .unwrap_or_else(|| panic!("docs/architecture.md has no row for {dep}"));
            let down = rank(dep_layer) < rank(layer);
            let shared_on_shared = layer == "shared" && dep_layer == "shared";
            assert!(
                down || shared_on_shared,
                "{name} ({layer}) depends on {dep} ({dep_layer}): dependencies point \
                 binary -> services -> shared"
            );
        }
    }
    let edge_users: Vec<&String> = deps
        .iter()
        .filter(|(_, uses)| uses.contains("otus-edge"))
        .map(|(name, _)| name)
        .collect();
    assert_eq!(edge_users, ["otus"], "only the binary depends on the edge");
    // gRPC has one home on both ends: the edge calls the services through
    // otus-grpc's client side; the gRPC crate runs no SQL (readiness is a
    // probe the service hands it), so it needs no database crate.
    assert!(
        deps["otus-edge"].contains("otus-grpc"),
        "the edge's channels and error decoding come from otus-grpc: {:?}",
        deps["otus-edge"]
    );
    assert!(
        !deps["otus-grpc"].contains("otus-db"),
        "otus-grpc depends on otus-db: {:?}",
        deps["otus-grpc"]
    );
    for name in layers.keys() {
        assert!(
            deps.contains_key(name),
            "docs/architecture.md lists {name}, which is no crate"
        );
    }
}

/// The first path segment of every `crate::…` the code outside tests names.
fn imported_modules(source: &str) -> BTreeSet<String> {
    let code = source.split("#[cfg(test)]").next().unwrap_or_default();
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a::b, c, d::{e, f}}`: the top-level names.
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(first_segment(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            out.insert(first_segment(&item));
        } else {
            out.insert(first_segment(rest));
        }
    }
    out.remove("");
    out
}

fn first_segment(path: &str) -> String {
    path.trim()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

#[test]
fn edge_modules_import_each_other_without_a_circle() {
    let dir = format!("{ROOT}/crates/edge/src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("edge sources") {
        let path = entry.expect("entry").path();
        let module = path.file_stem().and_then(|s| s.to_str()).expect("name");
        if module == "lib" {
            // The crate root declares the modules and merges their routers.
            continue;
        }
        let source = std::fs::read_to_string(&path).expect("source");
        graph.insert(module.to_owned(), imported_modules(&source));
    }
    assert!(graph.len() >= 10, "read too few modules: {graph:?}");
    assert!(
        graph["users"].contains("session") && graph["auth"].contains("profile"),
        "the import reader misses imports: {graph:?}"
    );
    // Depth-first search for a back edge.
    fn visit<'a>(
        m: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if done.contains(m) {
            return;
        }
        if let Some(i) = path.iter().position(|p| *p == m) {
            panic!(
                "import circle in the edge: {}",
                [&path[i..], &[m]].concat().join(" -> ")
            );
        }
        path.push(m);
        for next in graph.get(m).into_iter().flatten() {
            if graph.contains_key(next) {
                visit(next, graph, path, done);
            }
        }
        path.pop();
        done.insert(m);
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        visit(m, &graph, &mut Vec::new(), &mut done);
    }
}

#[test]
fn the_import_reader_sees_a_circle() {
    // The reader the test above relies on, on a known circle's sources.
    let a = imported_modules("use crate::{b::X, error::ApiError};\nfn f() { crate::c::g() }");
    assert_eq!(
        a,
        ["b", "c", "error"].map(str::to_owned).into_iter().collect()
    );
    let only_tests = imported_modules("fn f() {}\n#[cfg(test)]\nmod tests { use crate::z; }");
    assert!(only_tests.is_empty(), "{only_tests:?}");
}

/// otus-telemetry is about telemetry: no gRPC channel, no tonic. (The call
/// metrics layer is a tower layer over any HTTP service.)
#[test]
fn telemetry_has_no_grpc_channel_code() {
    let manifest = read("crates/telemetry/Cargo.toml");
    assert!(
        !manifest.lines().any(|l| l.starts_with("tonic")),
        "otus-telemetry depends on tonic"
    );
    for entry in std::fs::read_dir(format!("{ROOT}/crates/telemetry/src")).expect("sources") {
        let path = entry.expect("entry").path();
        let source = std::fs::read_to_string(&path).expect("source");
        for word in ["tonic::transport", "Channel", "Endpoint"] {
            assert!(
                !source.contains(word),
                "{} names {word}: channels belong to otus_grpc::client",
                path.display()
            );
        }
    }
}
