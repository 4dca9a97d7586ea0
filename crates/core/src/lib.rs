//! mlctl-core: the resource graph, fingerprints, plan, apply engine, and the component traits
//! providers implement.
//!
//! The core never names a concrete provider and never prints: the CLI renders what it returns.

pub mod apply;
pub mod bake;
pub mod builtin_job;
pub mod components;
pub mod env;
pub mod error;
pub mod evaluation;
pub mod fingerprint;
pub mod gates;
pub mod graph;
pub mod host;
pub mod monitoring;
pub mod objectstore;
pub mod observe;
pub mod plan;
pub mod promote;
mod reconcile;
pub mod secrets;
pub mod state;
pub mod support;
pub mod transform;
pub mod url;

pub use components::*;
pub use error::{ErrorKind, ProviderError};
pub use fingerprint::Fingerprint;
pub use observe::observe;
pub use plan::{Action, Change, Desired, Plan};
pub use state::{Health, HistoryEntry, Lock, LockError, LockInfo, ObservedResource, StateStore};
