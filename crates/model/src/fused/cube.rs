//! [`FusedOps`] and [`FusedKernels`] for burn's GPU backends (wgpu and CUDA, both CubeCL with
//! burn's operation fusion), each behind the Cargo feature of the same name.
//!
//! They take the trait's default methods: the composed burn ops, which burn-fusion compiles
//! into fused GPU kernels on its own (element-wise chains such as `gelu_new` and the layer
//! norm's arithmetic become one kernel each). The fused autodiff nodes still apply, so the
//! backward pass is the hand-derived one rather than burn's op-by-op graph.

#[cfg(feature = "wgpu")]
mod wgpu {
    use burn::backend::Wgpu;

    use crate::fused::{FusedKernels, FusedOps};

    impl FusedOps for Wgpu {}
    impl FusedKernels for Wgpu {}
}

#[cfg(feature = "cuda")]
mod cuda {
    use burn::backend::Cuda;

    use crate::fused::{FusedKernels, FusedOps};

    impl FusedOps for Cuda {}
    impl FusedKernels for Cuda {}
}
