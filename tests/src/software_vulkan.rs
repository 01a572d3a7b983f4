//! Mesa's software Vulkan driver (lavapipe) for the GPU-path tests on machines without a GPU:
//! installed from Debian's `mesa-vulkan-drivers` when missing, once per process.
//!
//! Shared by the workspace tests (`albatross_tests::software_vulkan`) and the model crate's
//! golden tests (included by path), so it uses nothing beyond std.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

/// Where the Vulkan loader finds installed drivers.
const ICD_DIR: &str = "/usr/share/vulkan/icd.d";

fn lavapipe_installed() -> bool {
    std::fs::read_dir(Path::new(ICD_DIR)).is_ok_and(|entries| {
        entries.flatten().any(|e| e.file_name().to_string_lossy().starts_with("lvp_icd"))
    })
}

fn apt_get(args: &[&str]) -> Result<(), String> {
    let status = Command::new("apt-get")
        .args(["-y", "-q", "-o", "DPkg::Lock::Timeout=600"])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| format!("cannot run apt-get: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("apt-get {args:?} failed: {status}")) }
}

fn install() -> Result<(), String> {
    if lavapipe_installed() {
        return Ok(());
    }
    let install = || apt_get(&["install", "--no-install-recommends", "mesa-vulkan-drivers"]);
    install().or_else(|_| apt_get(&["update"]).and_then(|()| install()))?;
    if lavapipe_installed() {
        Ok(())
    } else {
        Err(format!("mesa-vulkan-drivers is installed but {ICD_DIR} has no lvp_icd*.json"))
    }
}

/// Makes sure a software Vulkan adapter exists, installing Mesa's lavapipe if needed.
///
/// # Panics
/// When it is missing and cannot be installed (not Debian, not root, no package mirror): the
/// message says what to install.
pub fn ensure() {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(why) = INSTALLED.get_or_init(install) {
        panic!(
            "the wgpu tests need a Vulkan driver; Mesa's software one (Debian package \
             mesa-vulkan-drivers) could not be installed: {why}"
        );
    }
}
