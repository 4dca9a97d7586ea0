//! `mlctl init`: scaffold a project from an embedded example.

use anyhow::{Context, Result, bail};
use std::path::Path;

include!(concat!(env!("OUT_DIR"), "/examples.rs"));

pub fn run(example: &str, dir: &Path) -> Result<u8> {
    let files: Vec<_> = EXAMPLES
        .iter()
        .filter(|(ex, _, _)| *ex == example)
        .collect();
    if files.is_empty() {
        let mut names: Vec<&str> = EXAMPLES.iter().map(|(e, _, _)| *e).collect();
        names.dedup();
        bail!(
            "there is no example `{example}`; examples: {}",
            names.join(", ")
        );
    }
    if dir.exists()
        && dir
            .read_dir()
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!(
            "{} is not empty; choose a new directory (init never overwrites files)",
            dir.display()
        );
    }
    for (_, rel, bytes) in &files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let gitignore = dir.join(".gitignore");
    let mut ignore = std::fs::read_to_string(&gitignore).unwrap_or_default();
    if !ignore.lines().any(|l| l.trim() == ".mlctl/") {
        ignore.push_str(".mlctl/\n");
        std::fs::write(&gitignore, ignore)
            .with_context(|| format!("cannot write {}", gitignore.display()))?;
    }
    println!(
        "created {} from example `{example}` ({} files)",
        dir.display(),
        files.len()
    );
    println!(
        "next: cd {} && git init && git add . && git commit -m init && mlctl plan",
        dir.display()
    );
    Ok(0)
}
