//! Names the commit the `plexus` binary is built from (`plexus --version`,
//! `GET /v1/node`): `$PLEXUS_COMMIT` if set (a build without `.git`, such as the
//! Dockerfile's), else `git rev-parse --short=12 HEAD`, else `unknown`.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=PLEXUS_COMMIT");
    let commit = std::env::var("PLEXUS_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(git_head)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=PLEXUS_COMMIT={}", commit.trim());
}

fn git_head() -> Option<String> {
    let git = Path::new(".git");
    if git.is_dir() {
        // Rebuild when HEAD moves: HEAD itself, the branch it names, packed refs.
        println!("cargo:rerun-if-changed=.git/HEAD");
        println!("cargo:rerun-if-changed=.git/packed-refs");
        if let Ok(head) = std::fs::read_to_string(git.join("HEAD"))
            && let Some(branch) = head.trim().strip_prefix("ref: ")
        {
            println!("cargo:rerun-if-changed=.git/{branch}");
        }
    }
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|c| !c.is_empty())
}
