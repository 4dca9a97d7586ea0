//! Reads mlctl manifests at a git revision, provenance and spec diffs
