//! A deterministic, file-backed mock target with injectable faults
