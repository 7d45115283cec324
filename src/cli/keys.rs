//! `plexus keys`, `plexus network init`, `plexus allowlist ...`: identities and the
//! signed allowlist, managed on disk.

use std::path::{Path, PathBuf};

use plexus_actors::NodeId;
use plexus_mesh::allowlist::{Allowlist, NodeEntry, SignedAllowlist, SubmitterEntry};
use plexus_mesh::driver::{NODE_KEY_FILE, read_key, write_atomic, write_new_key};
use plexus_vocab::identity::NodeKey;
use plexus_vocab::resources::{Resources, parse_tag};

use super::CliError;
use crate::config::{default_data_dir, parse_size};

/// The governance key's file name in a network directory.
pub const GOVERNANCE_KEY_FILE: &str = "governance.key";
/// The allowlist's file name in a network directory.
pub const ALLOWLIST_FILE: &str = "allowlist.bin";

/// The default network directory: `<data dir>/network`.
pub fn default_network_dir() -> PathBuf {
    default_data_dir().join("network")
}

fn fresh_key() -> Result<NodeKey, CliError> {
    crate::node::ephemeral_key().map_err(|e| CliError::Failed(e.to_string()))
}

pub(crate) fn keys_new(data_dir: Option<PathBuf>) -> Result<(), CliError> {
    let dir = data_dir.unwrap_or_else(default_data_dir);
    let path = dir.join(NODE_KEY_FILE);
    let key = fresh_key()?;
    write_new_key(&path, &key).map_err(|e| CliError::Input(e.to_string()))?;
    println!("{}", key.node_id());
    eprintln!("created {}", path.display());
    Ok(())
}

pub(crate) fn keys_show(data_dir: Option<PathBuf>) -> Result<(), CliError> {
    let dir = data_dir.unwrap_or_else(default_data_dir);
    let key = read_key(&dir.join(NODE_KEY_FILE)).map_err(|e| CliError::Input(e.to_string()))?;
    println!("{}", key.node_id());
    Ok(())
}

pub(crate) fn network_init(dir: Option<PathBuf>, name: &str) -> Result<(), CliError> {
    network_create(dir, name, false)
}

pub(crate) fn network_create(
    dir: Option<PathBuf>,
    name: &str,
    quiet: bool,
) -> Result<(), CliError> {
    let dir = dir.unwrap_or_else(default_network_dir);
    let key_path = dir.join(GOVERNANCE_KEY_FILE);
    let list_path = dir.join(ALLOWLIST_FILE);
    if list_path.exists() {
        return Err(CliError::Input(format!(
            "{}: a network exists already",
            list_path.display()
        )));
    }
    let key = fresh_key()?;
    write_new_key(&key_path, &key).map_err(|e| CliError::Input(e.to_string()))?;
    let signed = SignedAllowlist::sign(Allowlist::new(name, key.node_id()), &key)
        .map_err(|e| CliError::Failed(e.to_string()))?;
    save_allowlist(&list_path, &signed)?;
    if !quiet {
        println!("network `{name}` created; governance key {}", key.node_id());
        println!("  {}", key_path.display());
        println!("  {}", list_path.display());
    }
    Ok(())
}

/// Reads and verifies a signed allowlist file.
pub fn load_allowlist(path: &Path) -> Result<SignedAllowlist, CliError> {
    let bytes = std::fs::read(path)
        .map_err(|e| CliError::Input(format!("cannot read allowlist {}: {e}", path.display())))?;
    SignedAllowlist::decode(&bytes).map_err(|e| CliError::Input(format!("{}: {e}", path.display())))
}

fn save_allowlist(path: &Path, signed: &SignedAllowlist) -> Result<(), CliError> {
    let bytes = signed
        .encode()
        .map_err(|e| CliError::Failed(e.to_string()))?;
    write_atomic(path, &bytes, 0o644).map_err(|e| CliError::Failed(e.to_string()))
}

fn edit_allowlist(
    dir: Option<PathBuf>,
    edit: impl FnOnce(&mut Allowlist) -> Result<(), CliError>,
) -> Result<SignedAllowlist, CliError> {
    let dir = dir.unwrap_or_else(default_network_dir);
    let list_path = dir.join(ALLOWLIST_FILE);
    let key =
        read_key(&dir.join(GOVERNANCE_KEY_FILE)).map_err(|e| CliError::Input(e.to_string()))?;
    let current = load_allowlist(&list_path)?;
    let mut next = current.allowlist.clone();
    edit(&mut next)?;
    next.version = current.allowlist.version + 1;
    let signed = SignedAllowlist::sign(next, &key).map_err(|e| CliError::Input(e.to_string()))?;
    save_allowlist(&list_path, &signed)?;
    Ok(signed)
}

/// Options of `allowlist add`.
pub(crate) struct AddOptions {
    pub tags: Vec<String>,
    pub operator: Option<String>,
    pub cpu: Option<f64>,
    pub memory: Option<String>,
    pub gpus: Option<u32>,
    pub submitter: bool,
    /// Print nothing.
    pub quiet: bool,
}

pub(crate) fn allowlist_add(
    dir: Option<PathBuf>,
    peer: &str,
    opts: AddOptions,
) -> Result<(), CliError> {
    let node: NodeId = peer.parse().map_err(|e| CliError::Input(format!("{e}")))?;
    let mut tags = plexus_vocab::resources::Tags::new();
    for t in &opts.tags {
        let (k, v) = parse_tag(t).map_err(CliError::Input)?;
        tags.insert(k, v);
    }
    let cpu = opts.cpu.unwrap_or(0.0);
    if !cpu.is_finite() || cpu < 0.0 {
        return Err(CliError::Input(format!(
            "--cpu {cpu} is not a number of cores"
        )));
    }
    let memory_bytes = match &opts.memory {
        Some(m) => parse_size(m).map_err(|e| CliError::Input(format!("--memory: {e}")))?,
        None => 0,
    };
    let operator = opts.operator.clone().unwrap_or_else(|| "unnamed".into());
    let signed = edit_allowlist(dir, |list| {
        if opts.submitter {
            list.submitters
                .insert(node, SubmitterEntry { name: operator });
        } else {
            let declared = Resources {
                cpu_millis: (cpu * 1000.0) as u64,
                memory_bytes,
                gpus: opts.gpus.unwrap_or(0),
            };
            list.nodes.insert(
                node,
                NodeEntry {
                    operator,
                    tags,
                    declared,
                },
            );
        }
        Ok(())
    })?;
    if !opts.quiet {
        println!(
            "added {node}; allowlist is now version {}",
            signed.allowlist.version
        );
    }
    Ok(())
}

pub(crate) fn allowlist_remove(dir: Option<PathBuf>, peer: &str) -> Result<(), CliError> {
    let node: NodeId = peer.parse().map_err(|e| CliError::Input(format!("{e}")))?;
    let signed = edit_allowlist(dir, |list| {
        let was_node = list.nodes.remove(&node).is_some();
        let was_submitter = list.submitters.remove(&node).is_some();
        if was_node || was_submitter {
            Ok(())
        } else {
            Err(CliError::Input(format!("{node} is not on the allowlist")))
        }
    })?;
    println!(
        "removed {node}; allowlist is now version {}",
        signed.allowlist.version
    );
    Ok(())
}

pub(crate) fn allowlist_show(dir: Option<PathBuf>, json: bool) -> Result<(), CliError> {
    let dir = dir.unwrap_or_else(default_network_dir);
    let signed = load_allowlist(&dir.join(ALLOWLIST_FILE))?;
    let list = &signed.allowlist;
    if json {
        let nodes: Vec<serde_json::Value> = list
            .nodes
            .iter()
            .map(|(id, e)| serde_json::json!({ "id": id.to_string(), "operator": e.operator, "tags": e.tags, "declared": e.declared }))
            .collect();
        let submitters: Vec<serde_json::Value> = list
            .submitters
            .iter()
            .map(|(id, s)| serde_json::json!({ "id": id.to_string(), "name": s.name }))
            .collect();
        println!(
            "{}",
            serde_json::json!({ "network": list.network, "governance": list.governance.to_string(), "version": list.version, "nodes": nodes, "submitters": submitters })
        );
        return Ok(());
    }
    println!(
        "network `{}`, version {}, governance {}",
        list.network, list.version, list.governance
    );
    println!("nodes ({}):", list.nodes.len());
    for (id, e) in &list.nodes {
        let tags: Vec<String> = e
            .tags
            .iter()
            .map(|(k, v)| {
                if v.is_empty() {
                    k.clone()
                } else {
                    format!("{k}={v}")
                }
            })
            .collect();
        println!(
            "  {id}  operator={}  tags=[{}]",
            e.operator,
            tags.join(", ")
        );
    }
    if !list.submitters.is_empty() {
        println!("submitters ({}):", list.submitters.len());
        for (id, s) in &list.submitters {
            println!("  {id}  {}", s.name);
        }
    }
    Ok(())
}

/// Writes a small file atomically (0644), creating its directory.
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::Failed(format!("{}: {e}", dir.display())))?;
    }
    write_atomic(path, bytes, 0o644).map_err(|e| CliError::Failed(e.to_string()))
}
