//! What a node shares with the other nodes of a cluster, so that a package
//! crosses the upstream link once per cluster rather than once per node:
//! the owner of each key (`peers.rs`, a Ketama ring over a static peer list)
//! fills it and streams it to the nodes that ask (`serve.rs`); a second tier
//! on an S3-compatible bucket (`store.rs`) is read before the upstream and
//! given every fill, so a new node starts warm and a dead owner costs no
//! upstream fetch.

mod peers;
mod serve;
pub mod store;

pub use peers::Peers;
pub use store::{Store, StoreError};
