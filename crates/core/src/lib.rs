//! mlctl's resource graph, fingerprints, plan, apply engine and component traits
