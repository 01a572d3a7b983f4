//! The kernel set a model runs: what, besides the inputs, decides the bits of its results.
//!
//! On the CPU, burn-flex's GEMM (the `gemm` crate) and our fused kernels (`pulp`) pick their
//! SIMD code at run time from the CPU's features, and AVX-512, AVX2+FMA and scalar code round
//! differently. The thread count does not enter: the GEMM splits output tiles between threads,
//! never the inner (summed) dimension, and the other kernels reduce each row on one thread (the
//! worker's tests check that gradients are the same bits at 1 and 3 threads). The build (the
//! compiler and every kernel's code) is fixed separately: workers must run the coordinator's
//! build version.
//!
//! GPU backends are named by backend only: their kernels are compiled for the device at run
//! time, so two GPU models may differ where the names agree (exact mode across GPU models is not
//! checked beyond the backend).

use crate::device::Device;

/// The kernel set `device` runs in this process, e.g. `cpu/flex/x86_64/gemm-avx512f/pulp-v4`.
pub fn kernel_set(device: Device) -> String {
    match device {
        Device::Cpu => format!(
            "cpu/flex/{}/gemm-{}/pulp-{}",
            std::env::consts::ARCH,
            gemm_kernels(),
            pulp_level()
        ),
        Device::Wgpu(_) => "wgpu/burn-wgpu".to_owned(),
        Device::Cuda(_) => "cuda/burn-cuda".to_owned(),
    }
}

/// The instruction set the `gemm` crate dispatches its f32 kernels to (its own test, built with
/// the `x86-v4` feature).
fn gemm_kernels() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            "avx512f"
        } else if std::arch::is_x86_feature_detected!("fma") {
            "fma"
        } else {
            "scalar"
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") { "neon" } else { "scalar" }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        "portable"
    }
}

/// The level `pulp` dispatches our fused kernels to.
fn pulp_level() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        match pulp::Arch::new() {
            pulp::Arch::V4(_) => "v4".to_owned(),
            pulp::Arch::V3(_) => "v3".to_owned(),
            pulp::Arch::Scalar => "scalar".to_owned(),
            other => format!("{other:?}").to_lowercase(),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        format!("{:?}", pulp::Arch::new()).to_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_kernel_set_names_backend_architecture_and_both_dispatchers() {
        let set = kernel_set(Device::Cpu);
        let parts: Vec<&str> = set.split('/').collect();
        assert_eq!(parts.len(), 5, "{set}");
        assert_eq!(&parts[..3], &["cpu", "flex", std::env::consts::ARCH], "{set}");
        assert!(parts[3].starts_with("gemm-") && parts[4].starts_with("pulp-"), "{set}");
        assert_eq!(set, kernel_set(Device::Cpu), "stable within a process");
        assert_ne!(kernel_set(Device::Cuda(0)), set);
        assert_eq!(kernel_set(Device::Cuda(0)), kernel_set(Device::Cuda(1)));
    }
}
