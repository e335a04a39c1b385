//! The layering of `src/`, checked: every module refers only to modules
//! below it (never to one above, never in a circle), and nothing but
//! `lib.rs` goes through the crate root's re-exports (`crate::Error` and
//! the like) in code. ARCHITECTURE.md draws the same layers.
//!
//! It reads the sources as text: code lines only (comments and doc
//! comments, where intra-doc links name items by their public paths, are
//! skipped), looking for `crate::` and `$crate::` paths.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The layers from the bottom up; a module may use the ones before it.
const LAYERS: &[&[&str]] = &[
    &["strategy", "bitmap", "data_slot", "owner", "creation_hooks"],
    &["error"],
    &["abi"],
    &["arch"],
    &["sys"],
    &["perf_map"],
    &["trampoline"],
    &["policy"],
    &["block"],
    &["heap"],
    &["thunk"],
];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to (`None` for `lib.rs`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    match first.strip_suffix(".rs") {
        Some("lib") => None,
        Some(name) => Some(name.to_owned()),
        None => Some(first),
    }
}

/// The code of a line, without its `//` comment (strings containing `//`
/// are rare enough in this crate to not matter; a doc line is all comment).
fn code_of(line: &str) -> &str {
    line.split("//").next().unwrap_or("")
}

/// Every `crate::name` (and `$crate::name`) on a code line.
fn crate_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        let after = &rest[at + "crate::".len()..];
        rest = after;
        // `pub(crate)` and `in crate::` are visibility, not paths; a letter
        // before it is another identifier (`mycrate::`).
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let name: String = after
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '{')
            .collect();
        if let Some(group) = name.strip_prefix('{') {
            // `crate::{a, b}`: every name in the group.
            let end = after.find('}').unwrap_or(after.len());
            out.extend(
                after[1..end]
                    .split(',')
                    .map(|n| n.trim().split("::").next().unwrap_or("").trim().to_owned()),
            );
            let _ = group;
        } else {
            out.push(name);
        }
    }
    out
}

#[test]
fn every_module_depends_only_on_modules_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    let mut edges: BTreeMap<(String, String), usize> = BTreeMap::new();
    for file in &files {
        let Some(from) = module_of(&src, file) else {
            continue; // lib.rs is the facade, above everything
        };
        let Some(from_rank) = rank(&from) else {
            problems.push(format!(
                "{}: module `{from}` is in no layer of this test (add it)",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            for to in crate_paths(code_of(line)) {
                if to.is_empty() || to == from {
                    continue;
                }
                let place = format!("{}:{}", file.display(), n + 1);
                match rank(&to) {
                    Some(r) if r < from_rank => {
                        *edges.entry((from.clone(), to)).or_default() += 1;
                    }
                    Some(_) => problems.push(format!(
                        "{place}: `{from}` refers up (or across) to `{to}`: {}",
                        line.trim()
                    )),
                    None if to.starts_with(|c: char| c.is_uppercase()) => problems.push(format!(
                        "{place}: `crate::{to}` goes through the crate root's re-exports; \
                         import it from its defining module: {}",
                        line.trim()
                    )),
                    None => problems.push(format!(
                        "{place}: `crate::{to}` is in no layer of this test: {}",
                        line.trim()
                    )),
                }
            }
        }
    }
    for ((from, to), n) in &edges {
        println!("{from} -> {to} ({n})");
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_scanner_sees_what_it_must() {
    assert_eq!(crate_paths("use crate::heap::Heap;"), ["heap"]);
    assert_eq!(crate_paths("use crate::{arch, sys};"), ["arch", "sys"]);
    assert_eq!(crate_paths("$crate::abi::ThunkArg"), ["abi"]);
    assert_eq!(crate_paths("pub(crate) fn f() {}"), Vec::<String>::new());
    assert_eq!(crate_paths("pub(in crate::sys) fn f() {}"), ["sys"]);
    assert_eq!(code_of("/// [`Error`](crate::Error)"), "");
}

/// One job per file: no Rust source of the workspace is over 600 lines
/// (a file that grows past it is split along its jobs).
#[test]
fn no_source_file_is_over_600_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [
        "src",
        "tests",
        "examples",
        "cli",
        "bench",
        "cranelift",
        "testkit",
        "abi-matrix",
        "dlopen-check",
    ] {
        sources(&root.join(dir), &mut files);
    }
    assert!(
        files.len() > 50,
        "the sources were not found: {}",
        files.len()
    );
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > 600).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "over 600 lines: {long:?}");
}
