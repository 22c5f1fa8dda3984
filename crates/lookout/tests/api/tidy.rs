//! ARCHITECTURE.md stays true where a machine can tell: its code map names
//! every module and only modules that exist, the tests its invariants cite
//! exist, and the migrations it says are never edited are not.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `.rs` file under `dir`.
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

/// The text between two headings of ARCHITECTURE.md.
fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    let start = text.find(heading).expect(heading);
    let rest = &text[start + heading.len()..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

/// The backticked words of `text`.
fn quoted(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

#[test]
fn the_code_map_names_every_module_and_only_modules_that_exist() {
    let text = read(&root().join("ARCHITECTURE.md"));
    let map = section(&text, "## Code map");
    let named = quoted(map);
    let mut files = Vec::new();
    for krate in std::fs::read_dir(root().join("crates")).unwrap() {
        let src = krate.unwrap().path().join("src");
        if src.is_dir() {
            sources(&src, &mut files);
        }
    }
    let mut unnamed = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_str().unwrap();
        if ["lib.rs", "main.rs", "mod.rs"].contains(&name) {
            continue;
        }
        let dir = file
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        let in_dir = format!("{dir}/{name}");
        let as_dir = format!("{dir}/");
        if !named
            .iter()
            .any(|n| *n == name || *n == in_dir || (dir != "src" && *n == as_dir))
        {
            unnamed.push(
                file.strip_prefix(root())
                    .unwrap_or(file)
                    .display()
                    .to_string(),
            );
        }
    }
    assert!(
        unnamed.is_empty(),
        "modules the code map does not name: {unnamed:?}"
    );
    // And every file it names is there (the tests' too).
    let mut everything = files.clone();
    sources(&root().join("crates/lookout/tests"), &mut everything);
    sources(&root().join("fuzz/fuzz_targets"), &mut everything);
    let gone: Vec<&&str> = named
        .iter()
        .filter(|n| n.ends_with(".rs") && !n.contains(' '))
        .filter(|n| {
            !everything
                .iter()
                .any(|f| f.to_str().unwrap().ends_with(&format!("/{n}")))
        })
        .collect();
    assert!(
        gone.is_empty(),
        "the code map names files that are gone: {gone:?}"
    );
}

#[test]
fn the_tests_the_invariants_cite_exist() {
    let text = read(&root().join("ARCHITECTURE.md"));
    let invariants = section(&text, "## Invariants");
    let tests = root().join("crates/lookout/tests/api");
    let mut cited = 0;
    // "`name` in `tests/api/file.rs`" and "`tests/api/file.rs`".
    let words = quoted(invariants);
    for (i, word) in words.iter().enumerate() {
        if let Some(file) = word.strip_prefix("tests/api/") {
            let path = tests.join(file);
            assert!(path.exists(), "ARCHITECTURE.md cites {word}, which is gone");
            cited += 1;
            let before = words[..i].last();
            let between = invariants
                .split(&format!("`{word}`"))
                .next()
                .is_some_and(|t| t.trim_end().ends_with("in"));
            if let (Some(name), true) = (before, between) {
                if name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    assert!(
                        read(&path).contains(&format!("fn {name}(")),
                        "ARCHITECTURE.md cites {name} in {word}, which has no such test"
                    );
                }
            }
        }
    }
    assert!(cited > 10, "only {cited} citations found");
}

/// `crates/store/migrations/SHA256SUMS` holds each shipped migration's
/// digest; a migration edited after it shipped would fail every database
/// that ran it, so the test refuses it. A new migration adds its line.
#[test]
fn shipped_migrations_are_never_edited() {
    let dir = root().join("crates/store/migrations");
    let sums = read(&dir.join("SHA256SUMS"));
    let mut recorded: Vec<(String, String)> = sums
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (sum, file) = l.split_once("  ").expect("SUM  FILE");
            (file.to_owned(), sum.to_owned())
        })
        .collect();
    recorded.sort();
    let mut found = Vec::new();
    for engine in ["sqlite", "postgres"] {
        for entry in std::fs::read_dir(dir.join(engine)).unwrap() {
            let path = entry.unwrap().path();
            let file = format!("{engine}/{}", path.file_name().unwrap().to_str().unwrap());
            found.push((file, lookout_hub::auth::token::hash(&read(&path))));
        }
    }
    found.sort();
    for (file, sum) in &found {
        match recorded.iter().find(|(f, _)| f == file) {
            Some((_, s)) => assert_eq!(s, sum, "{file} was edited after it shipped"),
            None => panic!("{file} is new: add `{sum}  {file}` to SHA256SUMS"),
        }
    }
    assert_eq!(recorded.len(), found.len(), "a migration was removed");
}
