//! What a node shares with the other nodes of a cluster. So far: a second
//! tier on an S3-compatible bucket (`store.rs`), read on a local miss before
//! the upstream and given every fill, so a package crosses the upstream link
//! once per cluster rather than once per node, and a new node starts warm.

pub mod store;

pub use store::{Store, StoreError};
