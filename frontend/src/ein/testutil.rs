//! The shared `.ein` test corpus in `tests/data/{ok,err}` at the workspace root.
//!
//! Every error program starts with a line `# expect: <phase>: <text>` where `<phase>` is
//! `parse` or `check` and `<text>` must occur in the reported message.

use std::path::PathBuf;

fn dir(kind: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data")
        .join(kind)
}

/// `(file name, contents)` of every `*.ein` file in `tests/data/<kind>`, sorted by name.
pub fn corpus(kind: &str) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir(kind))
        .expect("corpus directory exists")
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "ein"))
        .map(|p| {
            let name = p
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&p).expect("corpus file is UTF-8");
            (name, text)
        })
        .collect();
    files.sort();
    files
}

/// An error program's expectation: `(phase, text)`.
pub fn expectation(name: &str, source: &str) -> (String, String) {
    let line = source
        .lines()
        .find_map(|l| l.strip_prefix("# expect:"))
        .unwrap_or_else(|| panic!("{name}: no `# expect:` line"));
    let (phase, text) = line
        .trim()
        .split_once(':')
        .unwrap_or_else(|| panic!("{name}: expectation must be `phase: text`"));
    (phase.trim().to_string(), text.trim().to_string())
}
