//! The crate docs are README.md (the first screen) followed by
//! docs/guide.md (the detail). Both read as they are on any renderer: their
//! Rust examples (compiled as doctests) have no rustdoc-hidden lines, so
//! what a reader sees is what compiles and can be pasted. The README stays
//! a first screen that links into the guide.

/// Counts the plain `rust` examples of `text`, failing on a hidden line.
fn rust_examples(name: &str, text: &str) -> usize {
    let mut in_rust = false;
    let mut blocks = 0;
    for (n, line) in text.lines().enumerate() {
        if let Some(lang) = line.strip_prefix("```") {
            if !in_rust && lang.trim() == "rust" {
                blocks += 1;
            }
            in_rust = !in_rust && lang.trim() == "rust";
            continue;
        }
        if in_rust {
            let t = line.trim_start();
            assert!(
                !(t == "#" || t.starts_with("# ") || t.starts_with("#[") && line.starts_with('#')),
                "{name} line {}: a rustdoc-hidden line: {line:?}",
                n + 1
            );
        }
    }
    blocks
}

#[test]
fn readme_examples_have_no_hidden_lines() {
    let readme = include_str!("../README.md");
    let guide = include_str!("../docs/guide.md");
    assert!(
        rust_examples("README.md", readme) >= 1,
        "the README's example was not found"
    );
    assert!(
        rust_examples("docs/guide.md", guide) >= 2,
        "the guide's examples were not found"
    );
}

#[test]
fn the_readme_is_a_first_screen_that_links_into_the_guide() {
    let readme = include_str!("../README.md");
    let guide = include_str!("../docs/guide.md");
    let lines = readme.lines().count();
    assert!(
        lines <= 80,
        "README.md has {lines} lines; the detail belongs in docs/guide.md"
    );
    for cmd in ["cargo run --release", "cargo test --workspace"] {
        assert!(
            readme.contains(cmd),
            "README.md lacks the set-up command {cmd:?}"
        );
    }
    // Every crate-docs anchor the README links to is a heading of the guide.
    let prefix = "https://docs.rs/wxthunk/latest/wxthunk/#";
    let mut links = 0;
    for (at, _) in readme.match_indices(prefix) {
        let anchor: String = readme[at + prefix.len()..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        let found = guide.lines().any(|l| {
            l.strip_prefix("## ")
                .is_some_and(|h| h.to_lowercase().replace(' ', "-") == anchor)
        });
        assert!(
            found,
            "README.md links to #{anchor}, which no heading of docs/guide.md makes"
        );
        links += 1;
    }
    assert!(links >= 4, "README.md links into the guide {links} times");
}
