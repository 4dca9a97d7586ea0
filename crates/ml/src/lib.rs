//! Tabular data, validation, profiles, drift statistics, built-in trainers, metrics and the portable model format
