//! `docs/metrics.md` is generated from the table of metrics in `mlctl_spec::metrics`, and
//! `docs/drift.md` from the drift methods (`mlctl_spec::DriftMethod`), and `docs/quality.md`
//! from the quality checks and SLOs (`mlctl_spec::quality`), so the pages and what
//! the code checks cannot drift apart.

use std::path::{Path, PathBuf};

fn committed_path(page: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs")
        .join(page)
}

/// Fails when `current` differs from the committed `docs/<page>`;
/// `UPDATE_DOCS=1 cargo test -p mlctl-spec --test docs` rewrites it.
fn check_page(page: &str, source: &str, current: &str) {
    let path = committed_path(page);
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::create_dir_all(path.parent().expect("docs/")).expect("create docs/");
        std::fs::write(&path, current).unwrap_or_else(|e| panic!("write docs/{page}: {e}"));
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed == current {
        return;
    }
    let (line, ours, theirs) = committed
        .lines()
        .zip(current.lines())
        .enumerate()
        .find(|(_, (a, b))| a != b)
        .map(|(i, (a, b))| (i + 1, a, b))
        .unwrap_or((
            committed.lines().count().min(current.lines().count()) + 1,
            "<end>",
            "<more lines>",
        ));
    panic!(
        "docs/{page} is stale: {source} changed since it was generated. Regenerate it and \
         commit the result:\n\n    UPDATE_DOCS=1 cargo test -p mlctl-spec --test docs\n\n\
         first difference, line {line}:\n  committed: {ours}\n  current:   {theirs}"
    );
}

#[test]
fn metrics_page_is_current() {
    check_page(
        "metrics.md",
        "the table in crates/spec/src/metrics.rs",
        &mlctl_spec::metrics::markdown(),
    );
}

#[test]
fn drift_page_is_current() {
    check_page(
        "drift.md",
        "the drift methods in crates/spec/src/model/monitor.rs or crates/spec/src/drift.rs",
        &mlctl_spec::drift::markdown(),
    );
}

/// Every drift method is on the page with its default threshold, and both halves of the
/// default rule are.
#[test]
fn drift_page_lists_every_method() {
    let page = mlctl_spec::drift::markdown();
    for m in mlctl_spec::DriftMethod::ALL {
        let row = format!("| `{}` | ", m.name());
        assert!(page.contains(&row), "no row for {}", m.name());
    }
    assert!(page.contains("| <= 1000 | `ks` 0.05 |"), "{page}");
    assert!(page.contains("| > 1000 | `wasserstein` 0.1 |"), "{page}");
}

/// Every metric of the table is on the page, with its direction.
#[test]
fn metrics_page_lists_every_metric() {
    let page = mlctl_spec::metrics::markdown();
    for m in mlctl_spec::metrics::METRICS {
        let row = format!("| `{}` | {} |", m.name, m.direction.as_str());
        assert!(page.contains(&row), "no row for {}", m.name);
    }
}

#[test]
fn quality_page_is_current() {
    check_page(
        "quality.md",
        "the quality checks and SLOs in crates/spec/src/quality.rs",
        &mlctl_spec::quality::markdown(),
    );
}
