//! The README reads as it is on any renderer: its Rust examples (compiled
//! as doctests, since the README is the crate docs) have no rustdoc-hidden
//! lines, so what a reader sees is what compiles and can be pasted.

#[test]
fn readme_examples_have_no_hidden_lines() {
    let readme = include_str!("../README.md");
    let mut in_rust = false;
    let mut blocks = 0;
    for (n, line) in readme.lines().enumerate() {
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
                "README.md line {}: a rustdoc-hidden line: {line:?}",
                n + 1
            );
        }
    }
    assert!(blocks >= 3, "the README's examples were not found");
}
