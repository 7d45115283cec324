//! A local anvil chain for the demo and the tests: found (or installed by
//! `scripts/install-chain-tools.sh`), started on a free loopback port with the
//! Prague hardfork (EIP-2537) and one-second blocks, and killed when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::CliError;
use super::local::wait_until;

/// A running anvil.
pub struct Anvil {
    child: Child,
    /// Its JSON-RPC URL.
    pub url: String,
}

/// Where anvil is: `$PLEXUS_ANVIL`, else the install script's location, else the
/// install script is run (from this checkout) and its last line is the path.
pub fn anvil_path() -> Result<PathBuf, CliError> {
    if let Some(p) = std::env::var_os("PLEXUS_ANVIL") {
        return Ok(PathBuf::from(p));
    }
    let tools = std::env::var_os("PLEXUS_TOOLS")
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("plexus").join("tools")))
        .ok_or_else(|| CliError::Failed("no cache dir for tools".into()))?;
    let installed = tools.join("chain/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    if installed.exists() {
        return Ok(installed);
    }
    let script = [
        std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from),
        std::env::current_dir().ok(),
    ]
    .into_iter()
    .flatten()
    .map(|d| d.join("scripts/install-chain-tools.sh"))
    .find(|p| p.exists())
    .ok_or_else(|| {
        CliError::Failed(
            "anvil is not installed: run scripts/install-chain-tools.sh from a Plexus checkout, \
             or set PLEXUS_ANVIL to an anvil binary"
                .into(),
        )
    })?;
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| CliError::Failed(format!("{}: {e}", script.display())))?;
    if !out.status.success() {
        return Err(CliError::Failed(format!("{} failed", script.display())));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let path = text.lines().last().unwrap_or_default().trim();
    Ok(PathBuf::from(path))
}

impl Anvil {
    /// Starts anvil and waits until it answers `eth_chainId`.
    pub fn start() -> Result<Self, CliError> {
        let path = anvil_path()?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| CliError::Failed(e.to_string()))?
            .port();
        let child = Command::new(&path)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--hardfork",
                "prague",
                "--block-time",
                "1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| CliError::Failed(format!("cannot start {}: {e}", path.display())))?;
        let anvil = Anvil {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let agent = ureq::Agent::new_with_defaults();
        wait_until("anvil to answer", Duration::from_secs(30), || {
            agent
                .post(&anvil.url)
                .send_json(
                    serde_json::json!({"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}),
                )
                .ok()
                .map(|_| ())
        })?;
        Ok(anvil)
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
