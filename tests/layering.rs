//! The layering rule of `src/lib.rs` and ARCHITECTURE.md, held by reading the sources: a module imports only
//! modules of its own layer or of layers below it, and only the HTTP layer (with the server and the wiring that
//! serves it) names axum. `a_planted_upward_import_is_caught` shows the check catching what it is for.

use std::{collections::BTreeSet, fs, path::Path};

/// Layers, lowest first. A module may import its own layer and the layers below.
const LAYERS: &[(&str, &[&str])] = &[
    ("base", &["domain", "config", "metrics", "failpoint"]),
    ("infrastructure", &["store", "cache", "concurrency"]),
    ("contracts", &["error", "wire"]),
    (
        "features",
        &[
            "auth",
            "feed",
            "replay",
            "reference",
            "conflicts",
            "summary",
            "setup",
            "notify",
            "inbox",
            "durability",
        ],
    ),
    ("state", &["state"]),
    ("http", &["http", "server"]),
    ("wiring", &["app", "cli", "demo", "lib", "main"]),
];

/// Where axum may be named.
const AXUM_ALLOWED: &[&str] = &["http", "server", "app", "lib"];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, modules)| modules.contains(&module))
}

/// The top-level modules `source` imports through `crate::` paths, `use crate::{...}` groups included.
fn imported_modules(source: &str) -> BTreeSet<String> {
    let code: String = source
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = BTreeSet::new();
    let bytes = code.as_bytes();
    let ident = |from: usize| {
        let end = (from..bytes.len())
            .find(|&i| !(bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_'))
            .unwrap_or(bytes.len());
        code[from..end].to_string()
    };
    for (at, _) in code.match_indices("crate::") {
        let start = at + "crate::".len();
        if bytes.get(start) != Some(&b'{') {
            found.insert(ident(start));
            continue;
        }
        // A group: the first name after `{` and after each `,` at depth one.
        let (mut depth, mut expect, mut i) = (1, true, start + 1);
        while depth > 0 && i < bytes.len() {
            match bytes[i] {
                b'{' => depth += 1,
                b'}' => depth -= 1,
                b',' if depth == 1 => expect = true,
                b if depth == 1 && expect && (b.is_ascii_alphanumeric() || b == b'_') => {
                    let name = ident(i);
                    i += name.len();
                    found.insert(name);
                    expect = false;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }
    found.remove("self");
    found
}

fn names_axum(source: &str) -> bool {
    source
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .any(|code| code.contains("axum::") || code.contains("axum::{"))
}

/// Every breach of the rule in the file of top-level module `module` with `source`.
fn breaches(module: &str, file: &str, source: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Some(own) = layer_of(module) else {
        return vec![format!("{file}: module `{module}` has no layer in tests/layering.rs")];
    };
    for imported in imported_modules(source) {
        if imported == module {
            continue;
        }
        match layer_of(&imported) {
            Some(layer) if layer <= own => {}
            Some(layer) => out.push(format!(
                "{file}: `{module}` ({}) imports `{imported}` ({}), a higher layer",
                LAYERS[own].0, LAYERS[layer].0
            )),
            None => out.push(format!("{file}: imports `crate::{imported}`, which has no layer")),
        }
    }
    if names_axum(source) && !AXUM_ALLOWED.contains(&module) {
        out.push(format!("{file}: names axum below the HTTP layer"));
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_module_imports_a_higher_layer_and_axum_stays_in_http() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 50, "read the sources: {} files", files.len());
    let mut all = Vec::new();
    for path in files {
        let relative = path.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str().to_string_lossy();
        let module = first.trim_end_matches(".rs");
        let source = fs::read_to_string(&path).unwrap();
        all.extend(breaches(module, &relative.display().to_string(), &source));
    }
    assert!(all.is_empty(), "layering breaches:\n{}", all.join("\n"));
}

#[test]
fn a_planted_upward_import_is_caught() {
    let planted = "use crate::{\n    domain::ScopeId,\n    feed::{self, Pull},\n};\nuse crate::http::router;\n";
    assert_eq!(
        breaches("store", "store/planted.rs", planted),
        [
            "store/planted.rs: `store` (infrastructure) imports `feed` (features), a higher layer",
            "store/planted.rs: `store` (infrastructure) imports `http` (http), a higher layer",
        ]
    );
    assert_eq!(
        breaches("feed", "feed/planted.rs", "use axum::http::HeaderMap;"),
        ["feed/planted.rs: names axum below the HTTP layer"]
    );
    // Comments do not count, and a layer may import itself and below.
    assert!(breaches(
        "replay",
        "replay/x.rs",
        "// crate::http\nuse crate::{feed, store::x, domain};"
    )
    .is_empty());
}
