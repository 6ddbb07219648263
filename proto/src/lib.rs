//! Generated gRPC types and services.
//!
//! - [`v1`]: the public API (`Write`, `Query`, `Admin`); clients and `pharosctl` use it.
//! - [`internal`]: node-to-node traffic: Raft RPCs of every group multiplexed over one connection per peer,
//!   and writes/reads forwarded to a shard's leader.
//! - [`prometheus`]: Prometheus remote write messages.

#[allow(clippy::all)]
pub mod v1 {
    tonic::include_proto!("pharos.v1");
}

/// Prometheus remote write 1.0 messages (`/api/v1/write`).
#[allow(clippy::all)]
pub mod prometheus {
    tonic::include_proto!("prometheus");
}

#[allow(clippy::all)]
pub mod internal {
    tonic::include_proto!("pharos.internal.v1");
}
