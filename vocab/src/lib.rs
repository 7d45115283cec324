//! # plexus-vocab: the words every core shares
//!
//! * [`identity`]: ed25519 node, governance and client keys, and domain-separated
//!   signatures;
//! * [`resources`]: the resources and tags a node declares;
//! * [`names`]: which actor and registry names are reserved for the system;
//! * [`text`]: text bounds (a string cut at a character boundary).
//!
//! This crate sits below the mesh, the durable layer and the scheduler, so a core
//! that only needs to name a key or a resource need not depend on the whole mesh.
//! It is pure: no clock, no randomness (key generation takes a seed from the
//! caller), no I/O.

pub mod identity;
pub mod names;
pub mod resources;
pub mod text;
