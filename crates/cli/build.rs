//! Embeds every project under `examples/` into the binary, so `mlctl init --example NAME`
//! works from an installed `mlctl` with no checkout around.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') && name != ".gitignore"
            || name == "__pycache__"
            || name == "target"
        {
            continue;
        }
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../../examples");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut code = String::from(
        "/// Example projects: (example, path inside it, contents).\npub static EXAMPLES: &[(&str, &str, &[u8])] = &[\n",
    );
    let mut examples: Vec<_> = std::fs::read_dir(&root)
        .map(|r| {
            r.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    examples.sort();
    for ex in examples {
        let name = ex.file_name().unwrap().to_string_lossy().to_string();
        let mut files = Vec::new();
        walk(&ex, &mut files);
        for f in files {
            println!("cargo:rerun-if-changed={}", f.display());
            let rel = f
                .strip_prefix(&ex)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let abs = f.canonicalize().unwrap();
            writeln!(
                code,
                "    ({name:?}, {rel:?}, include_bytes!({:?})),",
                abs.display().to_string()
            )
            .unwrap();
        }
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("examples.rs");
    std::fs::write(out, code).unwrap();
}
