//! Reserved names: the one rule for which actor, registry and durable names belong
//! to the system and may not be chosen by a user, a job or a peer.
//!
//! A name is reserved when it starts, ignoring ASCII case, with one of
//! [`RESERVED_PREFIXES`]:
//! * `plexus`: the system's own actors and durable keys (the scheduler is the
//!   durable actor `plexus/scheduler`; system actor kinds are `plexus.*`);
//! * `durable:`: the registry names under which the durable service registers
//!   durable actors (`durable:<key>`); only that service may claim them, so a
//!   spawn named `durable:plexus/scheduler` cannot squat the scheduler's name.
//!
//! Users: job-spec validation (a job, and so each of its actor keys, may not be
//! named under a reserved prefix), and the daemon's API and node agent, which
//! refuse to spawn, stop or bind a reserved name on a user's or a peer's behalf.
//! System code that registers these names itself does not consult the rule.

/// Prefixes reserved for the system (compared ignoring ASCII case).
pub const RESERVED_PREFIXES: &[&str] = &["plexus", "durable:"];

/// Whether `name` is reserved for the system (see the module doc).
pub fn is_reserved(name: &str) -> bool {
    RESERVED_PREFIXES.iter().any(|p| {
        name.as_bytes()
            .get(..p.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(p.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_names_are_reserved_and_user_names_are_not() {
        for name in [
            "plexus",
            "plexus/scheduler",
            "PLEXUS/scheduler",
            "plexus.durable",
            "plexus-demo",
            "durable:plexus/scheduler",
            "Durable:job/a/0",
        ] {
            assert!(is_reserved(name), "{name}");
        }
        for name in ["", "echo", "job/a/0", "my-plexus", "durable", "plex", "dur"] {
            assert!(!is_reserved(name), "{name}");
        }
    }
}
