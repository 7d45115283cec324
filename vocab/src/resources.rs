//! Resources and tags: what a node offers, as declared in the allowlist and as
//! advertised (with what is free) over gossip.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An amount of compute.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Resources {
    /// CPU, in thousandths of a core.
    pub cpu_millis: u64,
    /// Memory, in bytes.
    pub memory_bytes: u64,
    /// Whole GPUs.
    pub gpus: u32,
}

impl Resources {
    /// Whether `self` covers `need` in every dimension.
    pub fn covers(&self, need: &Resources) -> bool {
        self.cpu_millis >= need.cpu_millis
            && self.memory_bytes >= need.memory_bytes
            && self.gpus >= need.gpus
    }

    /// `self - other`, saturating at zero per dimension.
    pub fn saturating_sub(&self, other: &Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_sub(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_sub(other.memory_bytes),
            gpus: self.gpus.saturating_sub(other.gpus),
        }
    }

    /// `self + other`, saturating.
    pub fn saturating_add(&self, other: &Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_add(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(other.memory_bytes),
            gpus: self.gpus.saturating_add(other.gpus),
        }
    }
}

/// Tags: `key=value` pairs; a flag such as `kyc` is a key with an empty value.
pub type Tags = BTreeMap<String, String>;

/// Parses `key=value` or `flag` into a tag. Keys are non-empty and made of
/// letters, digits, `-`, `_`, `.` and `:`.
pub fn parse_tag(text: &str) -> Result<(String, String), String> {
    let (key, value) = match text.split_once('=') {
        Some((k, v)) => (k.trim(), v.trim()),
        None => (text.trim(), ""),
    };
    let ok = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
    };
    if key.is_empty() || !ok(key) || !ok(value) {
        return Err(format!(
            "bad tag `{text}`: use key=value or flag, with letters, digits, - _ . :"
        ));
    }
    Ok((key.to_string(), value.to_string()))
}

/// Parses `8GiB`, `512MiB`, `1.5GB`, `1024` (bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a size like 8GiB"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" | "k" => 1024.0,
        "mib" | "m" => 1024.0 * 1024.0,
        "gib" | "g" => 1024.0 * 1024.0 * 1024.0,
        "tib" | "t" => 1024.0_f64.powi(4),
        other => return Err(format!("unknown size unit `{other}` in `{text}`")),
    };
    if !value.is_finite() || value < 0.0 {
        return Err(format!("`{text}` is not a size"));
    }
    Ok((value * mult) as u64)
}

/// Parses a CPU amount: cores (`2`, `0.5`) or millicores (`500m`).
pub fn parse_cpu(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (num, scale) = match t.strip_suffix('m') {
        Some(n) => (n, 1.0),
        None => (t, 1000.0),
    };
    let value: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a CPU amount like 2, 0.5 or 500m"))?;
    if !value.is_finite() || value < 0.0 || value * scale > 1e12 {
        return Err(format!("`{text}` is not a CPU amount"));
    }
    Ok((value * scale).round() as u64)
}

/// What a node advertises about itself over gossip.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMeta {
    /// Addresses others can dial (multiaddr text; opaque to the cores).
    pub addrs: Vec<String>,
    /// What the node has.
    pub total: Resources,
    /// What is not yet committed to actors.
    pub free: Resources,
    /// Tags (copied from the node's allowlist entry, plus any it adds).
    pub tags: Tags,
    /// The version of the allowlist this node holds; a peer that sees a higher one
    /// elsewhere knows to fetch it.
    pub allowlist_version: u64,
    /// The software it runs (e.g. `0.1.0 (1aa91d8b0c2e)`), for display: peers show
    /// at most [`SOFTWARE_SHOWN_MAX`] bytes of it and decide nothing on it.
    pub software: String,
}

/// The most bytes of a peer's [`NodeMeta::software`] shown.
pub const SOFTWARE_SHOWN_MAX: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_parse_and_refuse_junk() {
        assert_eq!(parse_tag("region=eu"), Ok(("region".into(), "eu".into())));
        assert_eq!(parse_tag("kyc"), Ok(("kyc".into(), String::new())));
        assert_eq!(
            parse_tag("country:fr"),
            Ok(("country:fr".into(), String::new()))
        );
        assert!(parse_tag("=eu").is_err());
        assert!(parse_tag("a b").is_err());
    }

    #[test]
    fn sizes_and_cpu_amounts_parse() {
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert!(parse_size("x").is_err());
        assert_eq!(parse_cpu("2"), Ok(2000));
        assert_eq!(parse_cpu("0.25"), Ok(250));
        assert_eq!(parse_cpu("500m"), Ok(500));
        assert!(parse_cpu("-1").is_err());
        assert!(parse_cpu("lots").is_err());
    }

    #[test]
    fn resources_arithmetic() {
        let a = Resources {
            cpu_millis: 2000,
            memory_bytes: 10,
            gpus: 1,
        };
        let b = Resources {
            cpu_millis: 500,
            memory_bytes: 20,
            gpus: 0,
        };
        assert!(!a.covers(&b));
        assert_eq!(
            a.saturating_sub(&b),
            Resources {
                cpu_millis: 1500,
                memory_bytes: 0,
                gpus: 1
            }
        );
        assert!(a.saturating_add(&b).covers(&a));
    }
}
