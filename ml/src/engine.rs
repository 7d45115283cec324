//! Where passes run: a Burn backend opened for serving, and the name receipts give
//! it.
//!
//! Two nodes can compare their outputs bit for bit only when they computed them
//! with the same code on the same kind of device, so an [`Engine`] carries, beside
//! its device, the backend name and version that every receipt of its work states
//! (`docs/design/poai.md`, "Determinism"):
//!
//! - **flex** (always built): Burn's CPU backend. Its outputs depend on the burn
//!   and burn-flex versions and the batch plan only, not on the machine or the
//!   thread count, so the version names the two crates.
//! - **wgpu** (the `wgpu` feature): a GPU through wgpu (Vulkan, Metal, DX12).
//!   Shaders, drivers and the adapter's arithmetic all move the last bits (about
//!   3e-6 against flex on the digits model), so the version also names the
//!   adapter, its driver and what cubecl compiles for, with a digest of all of
//!   them at the end: only nodes whose engines agree on every part verify each
//!   other's GPU work.
//!
//! Opening is the only fallible step: a build without the feature, or a machine
//! without an adapter, gets a typed [`EngineError`], never a panic.

use std::fmt;
use std::str::FromStr;

use burn::prelude::Device;

/// The crates whose code computes flex's outputs (a test holds them to the lockfile).
pub const FLEX_SOFTWARE: &str = "burn 0.22.0, burn-flex 0.22.1";
/// The crates whose code computes wgpu's outputs (a test holds them to the lockfile).
pub const WGPU_SOFTWARE: &str = "burn 0.22.0, burn-wgpu 0.22.1, cubecl-wgpu 0.11.3";
/// The longest backend version a receipt carries (`plexus-poai`'s bound on names).
pub const VERSION_MAX: usize = 128;

/// Which backend a node serves on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendKind {
    /// Burn's CPU backend.
    #[default]
    Flex,
    /// A GPU through wgpu.
    Wgpu,
}

impl BackendKind {
    /// Every kind, built or not.
    pub const ALL: [BackendKind; 2] = [BackendKind::Flex, BackendKind::Wgpu];

    /// Its name, as configs and receipts spell it.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Flex => "flex",
            BackendKind::Wgpu => "wgpu",
        }
    }

    /// Whether this build has it.
    pub fn built(self) -> bool {
        match self {
            BackendKind::Flex => true,
            BackendKind::Wgpu => cfg!(feature = "wgpu"),
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BackendKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| EngineError::Unknown(s.chars().take(64).collect()))
    }
}

/// Why a backend could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// A name no backend has: the configuration's fault.
    #[error("unknown backend `{0}` (known: flex, wgpu)")]
    Unknown(String),
    /// A backend this build leaves out: the build's.
    #[error("this build has no `{0}` backend; rebuild with `--features {0}`")]
    NotBuilt(&'static str),
    /// The backend is built but this machine cannot run it: the machine's.
    #[error("no {backend} adapter could be opened here: {why}")]
    Unavailable {
        /// The backend.
        backend: &'static str,
        /// What the driver said.
        why: String,
    },
}

/// A backend opened for serving.
#[derive(Clone, Debug)]
pub struct Engine {
    kind: BackendKind,
    device: Device,
    version: String,
}

impl Engine {
    /// The CPU engine; it always opens.
    pub fn flex() -> Engine {
        Engine {
            kind: BackendKind::Flex,
            device: Device::flex(),
            version: FLEX_SOFTWARE.into(),
        }
    }

    /// Opens `kind` on this machine.
    pub fn open(kind: BackendKind) -> Result<Engine, EngineError> {
        match kind {
            BackendKind::Flex => Ok(Engine::flex()),
            BackendKind::Wgpu => open_wgpu(),
        }
    }

    /// Its kind.
    pub fn kind(&self) -> BackendKind {
        self.kind
    }

    /// The device passes run on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The backend's name as receipts give it.
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }

    /// The version as receipts give it: the crates, and for a GPU the adapter.
    pub fn version(&self) -> &str {
        &self.version
    }
}

/// The receipt version of a GPU engine: the software, what the adapter says of
/// itself (cut to fit), and a digest over all of it, uncut, so two adapters whose
/// descriptions share a long prefix still differ.
#[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
fn gpu_version(software: &str, adapter: &str) -> String {
    use sha2::{Digest as _, Sha256};
    let digest = Sha256::new()
        .chain_update(software)
        .chain_update([0])
        .chain_update(adapter)
        .finalize();
    let tag = format!(" #{}", crate::hex(&digest[..6]));
    let room = VERSION_MAX - tag.len();
    let text = format!("{software}; {adapter}");
    format!("{}{tag}", plexus_vocab::text::cut(&text, room))
}

#[cfg(feature = "wgpu")]
fn open_wgpu() -> Result<Engine, EngineError> {
    use burn::backend::WgpuDevice;
    use burn::backend::wgpu::wgpu;

    let unavailable = |why: String| EngineError::Unavailable {
        backend: "wgpu",
        why,
    };
    let device = Device::from(WgpuDevice::default());
    // cubecl opens the adapter on first use and panics when there is none; the
    // panic is caught here and becomes the machine's error.
    let identity = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| device.identity()))
        .map_err(|panic| {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_else(|| "the driver failed".into());
            unavailable(why)
        })?
        .ok_or_else(|| unavailable("the device names no adapter".into()))?;
    // The driver is not in cubecl's identity; wgpu's adapter list has it.
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapters = futures_executor::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    let driver = adapters
        .iter()
        .map(wgpu::Adapter::get_info)
        .find(|info| info.name == identity.name)
        .map(|info| format!("{:?} {} {}", info.backend, info.driver, info.driver_info))
        .unwrap_or_default();
    let adapter = format!("{} ({}; {driver})", identity.name, identity.fingerprint);
    Ok(Engine {
        kind: BackendKind::Wgpu,
        device,
        version: gpu_version(WGPU_SOFTWARE, adapter.trim()),
    })
}

#[cfg(not(feature = "wgpu"))]
fn open_wgpu() -> Result<Engine, EngineError> {
    Err(EngineError::NotBuilt("wgpu"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names_parse_and_junk_is_refused() {
        assert_eq!("flex".parse::<BackendKind>(), Ok(BackendKind::Flex));
        assert_eq!("wgpu".parse::<BackendKind>(), Ok(BackendKind::Wgpu));
        assert!(matches!(
            "cuda".parse::<BackendKind>(),
            Err(EngineError::Unknown(s)) if s == "cuda"
        ));
        // A long name is cut in the error, not echoed whole.
        let long = "x".repeat(10_000);
        match long.parse::<BackendKind>() {
            Err(EngineError::Unknown(s)) => assert_eq!(s.len(), 64),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flex_always_opens_and_names_its_crates() {
        let e = Engine::open(BackendKind::Flex).unwrap();
        assert_eq!(e.kind(), BackendKind::Flex);
        assert_eq!(e.name(), "flex");
        assert_eq!(e.version(), FLEX_SOFTWARE);
    }

    #[cfg(not(feature = "wgpu"))]
    #[test]
    fn a_backend_left_out_of_the_build_is_a_typed_error() {
        assert_eq!(
            Engine::open(BackendKind::Wgpu).unwrap_err(),
            EngineError::NotBuilt("wgpu")
        );
        assert!(!BackendKind::Wgpu.built());
    }

    #[test]
    fn gpu_versions_fit_a_receipt_and_differ_by_any_part() {
        let a = gpu_version(
            WGPU_SOFTWARE,
            "llvmpipe (wgpu<spirv>; Vulkan llvmpipe Mesa 22.3.6)",
        );
        assert!(a.len() <= VERSION_MAX, "{a}");
        assert!(a.starts_with(WGPU_SOFTWARE));
        // Adapters that differ only past the cut still get different versions.
        let long = "A".repeat(200);
        let b = gpu_version(WGPU_SOFTWARE, &format!("{long} driver 1"));
        let c = gpu_version(WGPU_SOFTWARE, &format!("{long} driver 2"));
        assert!(b.len() <= VERSION_MAX && c.len() <= VERSION_MAX);
        assert_ne!(b, c);
        // Multi-byte characters are cut at a boundary.
        let d = gpu_version(WGPU_SOFTWARE, &"é".repeat(200));
        assert!(d.len() <= VERSION_MAX);
    }
}
