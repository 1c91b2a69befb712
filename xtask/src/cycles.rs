//! No two files of a crate import each other, directly or round a loop; every item a crate
//! exports is named in its crate docs ([`unnamed_exports`]); no source file passes
//! [`MAX_LINES`] outside its tests ([`long_files`]).
//!
//! A crate's modules are its `src/*.rs` files; a module's directory (`src/manager/…`) counts
//! as part of it (its children see it by `super`, which is nesting, not an import). A module
//! imports another when its code names `crate::other…`, or names through `crate::` an item
//! `lib.rs` re-exports from `other`. Comments and a file's closing `#[cfg(test)] mod tests
//! { … }` are not read: tests may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module name -> the modules it imports.
pub(crate) type Graph = BTreeMap<String, BTreeSet<String>>;

/// The import graph of the crate whose `src` is `src`.
pub(crate) fn graph_of(src: &Path) -> Result<Graph, String> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|err| format!("read {}: {err}", path.display()))
    };
    let mut texts = BTreeMap::new();
    let mut root = String::new();
    let entries = std::fs::read_dir(src).map_err(|err| format!("{}: {err}", src.display()))?;
    for entry in entries {
        let path = entry.map_err(|err| err.to_string())?.path();
        let Some(stem) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".rs"))
        else {
            continue;
        };
        let mut text = read(&path)?;
        if stem == "lib" || stem == "main" {
            root.push_str(&text);
            continue;
        }
        let dir = src.join(stem);
        if dir.is_dir() {
            for child in rust_files(&dir)? {
                text.push('\n');
                text.push_str(&read(&child)?);
            }
        }
        texts.insert(stem.to_owned(), text);
    }
    Ok(graph(&root, &texts))
}

fn rust_files(dir: &Path) -> Result<Vec<std::path::PathBuf>, String> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|err| format!("{}: {err}", dir.display()))? {
        let path = entry.map_err(|err| err.to_string())?.path();
        if path.is_dir() {
            files.extend(rust_files(&path)?);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The graph of modules `texts` (name -> source) given the crate root's source `root`.
pub(crate) fn graph(root: &str, texts: &BTreeMap<String, String>) -> Graph {
    let exports = reexports(&code(root));
    let mut graph = Graph::new();
    for (name, text) in texts {
        let mut to = BTreeSet::new();
        for item in crate_paths(&code(text)) {
            let target = if texts.contains_key(&item) {
                Some(item)
            } else {
                exports.get(&item).cloned()
            };
            if let Some(target) = target
                && &target != name
            {
                to.insert(target);
            }
        }
        graph.insert(name.clone(), to);
    }
    graph
}

/// `text` without comments and without a closing test module.
fn code(text: &str) -> String {
    let without_comments: String = text
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut cut = without_comments.len();
    for (at, _) in without_comments.match_indices("#[cfg(test)]") {
        let rest = without_comments[at + "#[cfg(test)]".len()..].trim_start();
        if let Some(after) = rest.strip_prefix("mod ")
            && after
                .split_whitespace()
                .nth(1)
                .is_some_and(|brace| brace.starts_with('{'))
        {
            cut = at;
            break;
        }
    }
    without_comments[..cut].to_owned()
}

/// The first identifier of every path after `crate::`, and every name of a
/// `crate::{…}` group.
fn crate_paths(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                names.extend(ident(part.trim()));
            }
        } else {
            names.extend(ident(rest));
        }
    }
    names
}

fn ident(text: &str) -> Option<String> {
    let name: String = text
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// Name -> module of every `pub use module::{…}` / `pub use module::Name` of the root.
fn reexports(root: &str) -> BTreeMap<String, String> {
    let mut exports = BTreeMap::new();
    for (at, _) in root.match_indices("pub use ") {
        let rest = &root[at + "pub use ".len()..];
        let Some(module) = ident(rest) else { continue };
        let Some(after) = rest[module.len()..].strip_prefix("::") else {
            continue;
        };
        let items = match after.strip_prefix('{') {
            Some(group) => &group[..group.find('}').unwrap_or(group.len())],
            None => &after[..after.find(';').unwrap_or(after.len())],
        };
        for item in items.split(',') {
            let item = item.split(" as ").last().unwrap_or("").trim();
            if let Some(name) = ident(item) {
                exports.insert(name, module.clone());
            }
        }
    }
    exports
}

/// Every set of modules that import each other round a loop (strongly connected components
/// of more than one module), each sorted.
pub(crate) fn loops(graph: &Graph) -> Vec<Vec<String>> {
    // Two modules are in one loop when each reaches the other.
    let reach = |from: &String| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(next) = todo.pop() {
            for to in graph.get(&next).into_iter().flatten() {
                if seen.insert(to.clone()) {
                    todo.push(to.clone());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|name| (name, reach(name))).collect();
    let mut done = BTreeSet::new();
    let mut found = Vec::new();
    for name in graph.keys() {
        if done.contains(name) {
            continue;
        }
        let component: Vec<String> = graph
            .keys()
            .filter(|other| {
                *other == name || (reached[name].contains(*other) && reached[*other].contains(name))
            })
            .cloned()
            .collect();
        done.extend(component.iter().cloned());
        if component.len() > 1 {
            found.push(component);
        }
    }
    found
}

/// The `src` folders of the workspace's crates.
pub(crate) fn crate_sources(root: &Path) -> Result<Vec<std::path::PathBuf>, String> {
    let mut sources = Vec::new();
    let crates = root.join("crates");
    for entry in std::fs::read_dir(&crates).map_err(|err| format!("{}: {err}", crates.display()))? {
        let src = entry.map_err(|err| err.to_string())?.path().join("src");
        if src.is_dir() {
            sources.push(src);
        }
    }
    for top in ["tests", "benches", "xtask"] {
        let src = root.join(top).join("src");
        if src.is_dir() {
            sources.push(src);
        }
    }
    sources.sort();
    Ok(sources)
}

/// The most lines a source file may have outside its tests: past it, a reader no longer
/// finds things in it by name, and the file should be split.
pub(crate) const MAX_LINES: usize = 1_000;

/// The files under `src` longer than [`MAX_LINES`], each with a sentence saying so. Test
/// files (`tests.rs`, `*_tests.rs`, anything under a `tests` directory) are not counted, nor
/// a file's closing `#[cfg(test)] mod tests { … }`.
pub(crate) fn long_files(src: &Path) -> Result<Vec<String>, String> {
    let mut long = Vec::new();
    for path in rust_files(src)? {
        let is_test = path.components().any(|c| c.as_os_str() == "tests")
            || path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n == "tests.rs" || n.ends_with("_tests.rs"));
        if is_test {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|err| format!("read {}: {err}", path.display()))?;
        let lines = lines_outside_tests(&text);
        if lines > MAX_LINES {
            long.push(format!(
                "{}: {lines} lines outside its tests (at most {MAX_LINES}): split it",
                path.display()
            ));
        }
    }
    Ok(long)
}

/// How many lines `text` has before its `#[cfg(test)] mod tests {` (all of them without one).
fn lines_outside_tests(text: &str) -> usize {
    let mut count = 0;
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod tests {"))
        {
            break;
        }
        count += 1;
    }
    count
}

/// The items `lib.rs` exports (`pub use` and `pub mod`) that its crate docs (`//!`) never
/// name: a reader of the docs should meet everything the crate exports.
pub(crate) fn unnamed_exports(lib: &str) -> Vec<String> {
    let docs: String = lib
        .lines()
        .filter_map(|line| line.strip_prefix("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    let code = code(lib);
    let mut items = Vec::new();
    for line in code.lines() {
        if let Some(name) = line.strip_prefix("pub mod ") {
            items.extend(ident(name));
        }
    }
    for (at, _) in code.match_indices("pub use ") {
        let rest = &code[at + "pub use ".len()..];
        let statement = &rest[..rest.find(';').unwrap_or(rest.len())];
        let names = match (statement.find('{'), statement.rfind('}')) {
            (Some(open), Some(close)) => statement[open + 1..close].to_owned(),
            _ => statement.rsplit("::").next().unwrap_or("").to_owned(),
        };
        for item in names.split(',') {
            let item = item.split(" as ").last().unwrap_or("").trim();
            items.extend(ident(item));
        }
    }
    items.retain(|item| {
        !docs.match_indices(item.as_str()).any(|(at, _)| {
            let before = docs[..at].chars().next_back();
            let after = docs[at + item.len()..].chars().next();
            let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
            !word(before) && !word(after)
        })
    });
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, text)| ((*name).to_owned(), (*text).to_owned()))
            .collect()
    }

    #[test]
    fn a_loop_through_paths_groups_and_reexports_is_found() {
        let root = "mod a; mod b; mod c;\npub use c::{Gamma, Delta as D};\npub use b::Beta;";
        let graph = graph(
            root,
            &texts(&[
                ("a", "use crate::b::Beta;\n"),
                // Through a re-export, in a group.
                ("b", "use crate::{Gamma, a};\n"),
                // Through a re-export in code; a comment naming a is not read.
                ("c", "fn f() -> crate::Beta { todo() } // crate::a\n"),
            ]),
        );
        assert_eq!(loops(&graph), vec![vec!["a", "b", "c"]]);
    }

    #[test]
    fn lines_are_counted_up_to_the_test_module() {
        assert_eq!(lines_outside_tests("a\nb\nc\n"), 3);
        assert_eq!(
            lines_outside_tests("a\n#[cfg(test)]\nmod tests {\n    x\n}\n"),
            1
        );
        // A test module in a file of its own is declared, not opened: every line counts.
        assert_eq!(lines_outside_tests("a\n#[cfg(test)]\nmod tests;\nb\n"), 4);
    }

    #[test]
    fn long_source_files_are_named_and_test_files_skipped() {
        let dir = std::env::temp_dir().join(format!("xtask-long-{}", std::process::id()));
        let long = "x\n".repeat(MAX_LINES + 1);
        std::fs::create_dir_all(dir.join("m")).unwrap();
        std::fs::write(dir.join("big.rs"), &long).unwrap();
        std::fs::write(dir.join("ok.rs"), "x\n".repeat(MAX_LINES)).unwrap();
        std::fs::write(dir.join("m").join("tests.rs"), &long).unwrap();
        std::fs::write(dir.join("node_tests.rs"), &long).unwrap();
        let found = long_files(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("big.rs") && found[0].contains("1001 lines"),
            "{found:?}"
        );
    }

    #[test]
    fn tests_comments_and_one_way_imports_make_no_loop() {
        let graph = graph(
            "",
            &texts(&[
                ("a", "use crate::b::X;\n"),
                (
                    "b",
                    "// use crate::a;\npub struct X;\n#[cfg(test)]\nmod tests {\n    use crate::a;\n}\n",
                ),
            ]),
        );
        assert!(loops(&graph).is_empty(), "{graph:?}");
    }

    #[test]
    fn exports_the_docs_never_name_are_found() {
        let lib = "//! [`Named`] is here; so is `re_exported`.\n\
                   pub use a::{Named, Unnamed};\npub use rm_model as re_exported;\n\
                   pub mod hidden;\npub use b::Other as Renamed;\n";
        assert_eq!(unnamed_exports(lib), vec!["hidden", "Unnamed", "Renamed"]);
    }

    #[test]
    fn the_workspace_has_no_import_loops_no_long_files_and_its_docs_name_every_export() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut found = Vec::new();
        for src in crate_sources(&root).unwrap() {
            if let Ok(lib) = std::fs::read_to_string(src.join("lib.rs")) {
                for item in unnamed_exports(&lib) {
                    found.push(format!(
                        "{}: {item} is not named in the docs",
                        src.display()
                    ));
                }
            }
            for component in loops(&graph_of(&src).unwrap()) {
                found.push(format!("{}: {}", src.display(), component.join(" <-> ")));
            }
            found.extend(long_files(&src).unwrap());
        }
        assert!(found.is_empty(), "{found:#?}");
    }
}
