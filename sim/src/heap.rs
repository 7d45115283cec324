//! Transparent huge pages for a large run's heap.
//!
//! A 10,000-node run keeps about 6 GB of state and touches it at random: each event
//! reads a few nodes' tables, links and timers, so it pays cache misses, and with
//! 4 KiB pages a TLB miss (a page-table walk, itself more cache misses) for nearly
//! every one. Backed by 2 MiB pages, the same heap needs 512 times fewer TLB entries.
//! Measured on the project's 2-core VM (docs/benchmarks.md, "Huge pages for the
//! simulator's heap"): 3,000- and 5,000-node runs took 14–21% less wall time and the
//! 10,000-node hour 16–24% less on two seeds (22.6 min against 26.9, 17.4 against
//! 22.8), with the same resident memory.
//!
//! Kernels commonly hand out transparent huge pages only to memory marked with
//! `madvise(MADV_HUGEPAGE)` (`/sys/kernel/mm/transparent_hugepage/enabled` set to
//! `madvise`, Debian's and Ubuntu's default). glibc's malloc marks the memory it
//! takes from the kernel when its `glibc.malloc.hugetlb` tunable is 1 (glibc 2.35
//! and later), and it reads tunables only from the `GLIBC_TUNABLES` environment
//! variable when the process starts. So a program that runs the simulator calls
//! [`reexec_with_huge_pages`] first, before it allocates much or starts a thread:
//! the process executes itself once more, with the same arguments and the tunable
//! added, and the second start finds it set and goes on.
//!
//! Nothing here changes what a run computes: the trace hash is the same with and
//! without huge pages (the heap's addresses never reach the simulation).

use std::ffi::{OsStr, OsString};

/// The glibc tunable that makes malloc ask for transparent huge pages.
const TUNABLE: &str = "glibc.malloc.hugetlb";

/// Set to `0` to run without huge pages (the process is not executed again).
pub const OPT_OUT: &str = "PLEXUS_SIM_HUGE_PAGES";

/// Why [`reexec_with_huge_pages`] returned (when it succeeds, it does not return).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HugePages {
    /// `GLIBC_TUNABLES` already says whether to use huge pages: the tunable was added
    /// by an earlier start, or the user chose.
    #[error("glibc.malloc.hugetlb is already set")]
    AlreadySet,
    /// `PLEXUS_SIM_HUGE_PAGES=0`.
    #[error("huge pages turned off by {OPT_OUT}=0")]
    OptedOut,
    /// Not Linux with glibc: the tunable does not exist there.
    #[error("not a glibc build on Linux")]
    Unsupported,
    /// The executable could not be found or executed again; the run goes on with
    /// ordinary pages.
    #[error("cannot execute the program again with huge pages: {0}")]
    Exec(#[source] std::io::Error),
}

/// `GLIBC_TUNABLES` with huge pages turned on, from its current value; `None` when
/// the current value already sets the tunable (to any value: the user's choice
/// stands, and an earlier start's is never added twice).
fn tunables_with_huge_pages(current: Option<&OsStr>) -> Option<OsString> {
    let current = current.unwrap_or_default();
    if tunable_value(current).is_some() {
        return None;
    }
    let mut out = OsString::from(current);
    if !out.is_empty() {
        out.push(":");
    }
    out.push(TUNABLE);
    out.push("=1");
    Some(out)
}

/// The value `GLIBC_TUNABLES` gives glibc's huge-page tunable (empty when it names
/// the tunable without a value), or `None` when it does not set it.
fn tunable_value(tunables: &OsStr) -> Option<String> {
    tunables.to_string_lossy().split(':').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (name == TUNABLE).then(|| value.to_string())
    })
}

/// How this process's heap gets its pages, as glibc was told at start: for
/// reports, so that a run's speed can be read with it.
pub fn pages() -> String {
    match std::env::var_os("GLIBC_TUNABLES").and_then(|t| tunable_value(&t)) {
        Some(v) if v == "1" => format!("transparent huge pages ({TUNABLE}=1)"),
        Some(v) => format!("as {TUNABLE}={v} has it"),
        None => "ordinary pages".to_string(),
    }
}

/// Executes this program again with glibc's huge-page tunable set, the same
/// arguments and the rest of the environment unchanged. Returns only when it did not
/// (the reason says why); the caller then goes on with ordinary pages. Call it at
/// the start of `main`, before other threads exist.
pub fn reexec_with_huge_pages() -> HugePages {
    if std::env::var_os(OPT_OUT).is_some_and(|v| v == "0") {
        return HugePages::OptedOut;
    }
    reexec()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn reexec() -> HugePages {
    use std::os::unix::process::CommandExt;

    let Some(tunables) = tunables_with_huge_pages(std::env::var_os("GLIBC_TUNABLES").as_deref())
    else {
        return HugePages::AlreadySet;
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return HugePages::Exec(e),
    };
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    // `exec` returns only on failure.
    HugePages::Exec(command.args(args).env("GLIBC_TUNABLES", tunables).exec())
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn reexec() -> HugePages {
    HugePages::Unsupported
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tunable_is_added_once_and_the_users_choice_stands() {
        assert_eq!(
            tunables_with_huge_pages(None).as_deref(),
            Some(OsStr::new("glibc.malloc.hugetlb=1"))
        );
        assert_eq!(
            tunables_with_huge_pages(Some(OsStr::new(""))).as_deref(),
            Some(OsStr::new("glibc.malloc.hugetlb=1"))
        );
        // Other tunables are kept.
        assert_eq!(
            tunables_with_huge_pages(Some(OsStr::new("glibc.malloc.arena_max=2"))).as_deref(),
            Some(OsStr::new(
                "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
            ))
        );
        // Set already, by an earlier start or by the user (to anything): unchanged.
        for set in [
            "glibc.malloc.hugetlb=1",
            "glibc.malloc.hugetlb=0",
            "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=2",
        ] {
            assert_eq!(
                tunables_with_huge_pages(Some(OsStr::new(set))),
                None,
                "{set}"
            );
        }
        // Named without a value: glibc's to judge, so left alone.
        assert_eq!(
            tunables_with_huge_pages(Some(OsStr::new("glibc.malloc.hugetlb"))),
            None
        );
        // A tunable whose name merely contains it is another tunable.
        assert_eq!(
            tunables_with_huge_pages(Some(OsStr::new("glibc.malloc.hugetlbx=1"))).as_deref(),
            Some(OsStr::new("glibc.malloc.hugetlbx=1:glibc.malloc.hugetlb=1"))
        );
    }
}
