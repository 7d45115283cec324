//! # plexus-mesh: the cluster (roadmap step 2)
//!
//! Node identity, permissioned admission, SWIM membership and failure detection, the
//! cluster registry and remote actor delivery. The decision logic is sans-IO (always
//! compiled); the libp2p driver comes with the `runtime` feature.
