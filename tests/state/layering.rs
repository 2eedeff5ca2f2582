//! The layering of ARCHITECTURE.md, checked: each module may use only the
//! modules listed for it. A `crate::x` path in its sources that names any
//! other fails this test, with the file and line.

use std::collections::BTreeSet;
use std::path::Path;

/// What each module may use (besides itself). `node` and `cli` assemble
/// the others and may use anything; `bin` uses the library from outside.
const ALLOWED: &[(&str, &[&str])] = &[
    ("model", &[]),
    ("replica", &["model"]),
    ("store", &["model", "replica"]),
    ("sync", &["model", "replica", "store"]),
    ("storpool", &["model"]),
    ("emulator", &["model", "storpool"]),
    ("engine", &["model", "replica", "store", "storpool"]),
    ("api", &["model", "replica", "store", "sync", "engine"]),
];

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every `crate::<name>` in `text`, with its line number.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push((n + 1, name));
            }
            rest = after;
        }
        // `use crate::{a, b}` names several.
        if let Some(i) = code.find("crate::{") {
            let inner = &code[i + "crate::{".len()..];
            for part in inner.split([',', '}']) {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.push((n + 1, name));
                }
            }
        }
    }
    out
}

#[test]
fn each_module_uses_only_the_modules_below_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules: BTreeSet<&str> = ALLOWED
        .iter()
        .map(|(m, _)| *m)
        .chain(["node", "cli"])
        .collect();
    let mut wrong = Vec::new();
    let mut checked = 0;
    for (module, allowed) in ALLOWED {
        let mut files = Vec::new();
        sources(&root.join(module), &mut files);
        let single = root.join(format!("{module}.rs"));
        if single.exists() {
            files.push(single);
        }
        assert!(!files.is_empty(), "no sources for module {module}");
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for (line, name) in crate_paths(&text) {
                checked += 1;
                if name == *module || !modules.contains(name.as_str()) {
                    continue;
                }
                if !allowed.contains(&name.as_str()) {
                    wrong.push(format!(
                        "{}:{line}: {module} uses crate::{name}",
                        f.strip_prefix(&root).unwrap_or(&f).display()
                    ));
                }
            }
        }
    }
    assert!(checked > 50, "the scan found too few paths: {checked}");
    assert!(
        wrong.is_empty(),
        "layering broken (see ARCHITECTURE.md):\n{}",
        wrong.join("\n")
    );
}

/// The API's wire types are made of `model` and `replica` values only, so
/// a change inside the engine or the sync layer cannot change the JSON a
/// client reads (the handlers convert).
#[test]
fn the_api_types_use_only_model_and_replica() {
    let f = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api/types.rs");
    let text = std::fs::read_to_string(&f).unwrap();
    let wrong: Vec<String> = crate_paths(&text)
        .into_iter()
        .filter(|(_, name)| !["model", "replica", "api"].contains(&name.as_str()))
        .map(|(line, name)| format!("api/types.rs:{line}: uses crate::{name}"))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_scan_sees_grouped_and_nested_paths() {
    let found: Vec<String> = crate_paths(
        "use crate::{model::X, store::Db};\nlet x = crate::node::config::Role; // crate::api\n",
    )
    .into_iter()
    .map(|(_, n)| n)
    .collect();
    assert!(found.contains(&"model".to_string()));
    assert!(found.contains(&"store".to_string()));
    assert!(found.contains(&"node".to_string()));
    assert!(!found.contains(&"api".to_string()), "comments are not code");
}
