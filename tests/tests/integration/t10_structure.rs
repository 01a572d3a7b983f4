//! The workspace's structure: no import circles between the source files of any crate.
//!
//! A file imports another when its non-test code names a path into it: `crate::a::b`,
//! `super::x` (resolved from the file's own module), a bare `child::` of its own module, or an
//! item of a `use …::{…}` group. Re-exports resolve to the module that re-exports them, so a
//! module must import a name from the module that defines it. Comments and everything from the
//! first `#[cfg(test)]` on are ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

#[test]
fn no_crate_has_an_import_circle_between_its_files() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates");
    let mut circles = Vec::new();
    for entry in std::fs::read_dir(&crates).expect("crates/") {
        let src = entry.expect("entry").path().join("src");
        if !src.is_dir() {
            continue;
        }
        let files = module_files(&src);
        let graph = import_graph(&files);
        for circle in strongly_connected(&graph) {
            let names: Vec<String> = circle.iter().map(display).collect();
            circles.push(format!("{}: {}", src.display(), names.join(" ↔ ")));
        }
    }
    assert!(circles.is_empty(), "import circles:\n{}", circles.join("\n"));
}

#[test]
fn the_scanner_sees_a_circle_through_a_parent_and_a_brace_import() {
    let files = BTreeMap::from([
        (vec![], "mod a;\nmod b;\npub use a::Thing;\n".to_owned()),
        (vec!["a".to_owned()], "use crate::{b::Other, b::More};\npub struct Thing;\n".to_owned()),
        (
            vec!["b".to_owned()],
            "use super::a::Thing;\n// use crate::lib\npub struct Other;\n".to_owned(),
        ),
    ]);
    let graph = import_graph(&files);
    let circles = strongly_connected(&graph);
    assert_eq!(circles, vec![vec![vec!["a".to_owned()], vec!["b".to_owned()]]]);
}

/// Every `.rs` file under `src`, by module path (`lib.rs`, `main.rs` and `mod.rs` name their
/// directory's module), with its text.
fn module_files(src: &Path) -> BTreeMap<Module, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable source tree") {
            let path: PathBuf = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).expect("under src").with_extension("");
            let mut module: Module =
                relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if matches!(module.last().map(String::as_str), Some("lib" | "main" | "mod")) {
                module.pop();
            }
            let text = std::fs::read_to_string(&path).expect("readable source");
            out.insert(module, text);
        }
    }
    out
}

/// Which module files each module file imports.
fn import_graph(files: &BTreeMap<Module, String>) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut graph = BTreeMap::new();
    for (module, text) in files {
        let code = non_test_code(text);
        let mut targets = BTreeSet::new();
        for path in paths(&code) {
            let Some(resolved) = resolve(module, &path, files) else { continue };
            if &resolved != module {
                targets.insert(resolved);
            }
        }
        graph.insert(module.clone(), targets);
    }
    graph
}

/// The text before the first `#[cfg(test)]`, without comment lines.
fn non_test_code(text: &str) -> String {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    code.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// Every `a::b::c` path in `code`, with `prefix::{x, y::z}` groups expanded.
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let ident_start = bytes[i].is_ascii_alphabetic() || bytes[i] == b'_';
        let starts_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let follows_path = i >= 2 && &bytes[i - 2..i] == b"::";
        if !ident_start || !starts_word || follows_path {
            i += 1;
            continue;
        }
        let (segments, end) = path_at(code, i);
        if segments.len() > 1 || code[end..].starts_with("::{") {
            if code[end..].starts_with("::{") {
                let close = code[end..].find('}').map_or(code.len(), |c| end + c);
                for item in code[end + 3..close].split(',') {
                    let item = item.split(" as ").next().unwrap_or_default().trim();
                    let mut path = segments.clone();
                    let segments = item.split("::").map(str::trim).filter(|s| !s.is_empty());
                    path.extend(segments.map(str::to_owned));
                    out.push(path);
                }
                i = close;
            } else {
                out.push(segments);
                i = end;
            }
        } else {
            i = end.max(i + 1);
        }
    }
    out
}

/// The `::`-separated identifiers starting at `start`, and where they end.
fn path_at(code: &str, start: usize) -> (Vec<String>, usize) {
    let mut segments = Vec::new();
    let mut at = start;
    loop {
        let len =
            code[at..].bytes().take_while(|b| b.is_ascii_alphanumeric() || *b == b'_').count();
        if len == 0 {
            break;
        }
        segments.push(code[at..at + len].to_owned());
        at += len;
        if code[at..].starts_with("::")
            && code[at + 2..].bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        {
            at += 2;
        } else {
            break;
        }
    }
    (segments, at)
}

/// The module file `path` (seen from `module`) lands in, if it names one of this crate.
fn resolve(module: &Module, path: &[String], files: &BTreeMap<Module, String>) -> Option<Module> {
    let (mut base, rest): (Module, &[String]) = match path.first().map(String::as_str) {
        Some("crate") => (Vec::new(), &path[1..]),
        Some("super") => {
            let mut base = module.clone();
            let supers = path.iter().take_while(|s| *s == "super").count();
            for _ in 0..supers {
                base.pop();
            }
            (base, &path[supers..])
        }
        // A bare path starting with a child of this module.
        Some(first) => {
            let mut child = module.clone();
            child.push(first.to_owned());
            if !files.contains_key(&child) {
                return None;
            }
            (child, &path[1..])
        }
        None => return None,
    };
    for segment in rest {
        let mut deeper = base.clone();
        deeper.push(segment.clone());
        if files.contains_key(&deeper) {
            base = deeper;
        } else {
            break;
        }
    }
    files.contains_key(&base).then_some(base)
}

/// The circles of `graph`: its strongly connected components of more than one module (Tarjan).
fn strongly_connected(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct Search<'g> {
        graph: &'g BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'g Module, usize>,
        low: BTreeMap<&'g Module, usize>,
        stack: Vec<&'g Module>,
        on_stack: BTreeSet<&'g Module>,
        found: Vec<Vec<Module>>,
    }
    impl<'g> Search<'g> {
        fn visit(&mut self, v: &'g Module) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flatten() {
                let Some((w, _)) = self.graph.get_key_value(w) else { continue };
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.clone());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut search = Search {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !search.index.contains_key(v) {
            search.visit(v);
        }
    }
    search.found
}

fn display(module: &Module) -> String {
    if module.is_empty() { "lib".to_owned() } else { module.join("/") }
}
