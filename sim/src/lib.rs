//! # plexus-sim: the deterministic simulator (roadmap step 3)
//!
//! Runs the production cores (membership, registry, delivery, supervision) for many
//! nodes on one thread in virtual time, with seeded faults, so any run replays
//! exactly from its seed. It depends on the core crates without their `runtime`
//! features: no tokio, no libp2p, no clock.
