//! Where the model runs: the `--device` syntax, and the one place that turns a device into a
//! burn backend type, so callers write their work once, generic over [`TrainingBackend`].
//!
//! - `cpu`: burn's Flex backend with the fused CPU kernels (always built);
//! - `wgpu`, `wgpu:N`, `wgpu:cpu`: burn-wgpu (Vulkan, Metal or DX12), on the best adapter, the
//!   N-th discrete GPU, or a software adapter such as Mesa's lavapipe (feature `wgpu`);
//! - `cuda`, `cuda:N`: burn-cuda on the N-th NVIDIA GPU (feature `cuda`; the CUDA driver is
//!   loaded at run time, so the build needs no toolkit).

use std::fmt;
use std::str::FromStr;

use crate::error::{ModelError, Result};
use crate::fused::TrainingBackend;

/// A backend family, as a job spec may pin it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// The CPU backend.
    Cpu,
    /// burn-wgpu.
    Wgpu,
    /// burn-cuda.
    Cuda,
}

impl DeviceKind {
    /// The name used on the command line and in job specs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Wgpu => "wgpu",
            Self::Cuda => "cuda",
        }
    }

    /// Whether this binary was built with the backend.
    pub fn is_built(self) -> bool {
        match self {
            Self::Cpu => true,
            Self::Wgpu => cfg!(feature = "wgpu"),
            Self::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// The backends this binary was built with, e.g. `cpu, wgpu`.
    pub fn built() -> String {
        [Self::Cpu, Self::Wgpu, Self::Cuda]
            .into_iter()
            .filter(|kind| kind.is_built())
            .map(Self::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which wgpu adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WgpuAdapter {
    /// The best one the graphics API offers (a high-power GPU if there is one).
    Best,
    /// The N-th discrete GPU.
    Discrete(usize),
    /// A software adapter (Mesa's lavapipe, say): for tests on machines without a GPU.
    Software,
}

/// A device to run the model on (see the module documentation for the syntax).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Device {
    /// The CPU backend.
    #[default]
    Cpu,
    /// A wgpu adapter.
    Wgpu(WgpuAdapter),
    /// The N-th CUDA device.
    Cuda(usize),
}

impl Device {
    /// An error naming the Cargo feature to build with when this binary lacks the backend.
    ///
    /// # Errors
    /// [`ModelError::DeviceUnavailable`] when the backend is not built in.
    pub fn check_built(self) -> Result<()> {
        let kind = self.kind();
        if kind.is_built() {
            return Ok(());
        }
        Err(ModelError::DeviceUnavailable {
            device: self.to_string(),
            reason: format!(
                "this binary was built without the `{kind}` feature (it has: {built}); build it \
                 with `cargo build --release --features {kind}`",
                built = DeviceKind::built()
            ),
        })
    }

    /// The backend family.
    pub fn kind(self) -> DeviceKind {
        match self {
            Self::Cpu => DeviceKind::Cpu,
            Self::Wgpu(_) => DeviceKind::Wgpu,
            Self::Cuda(_) => DeviceKind::Cuda,
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Wgpu(WgpuAdapter::Best) => f.write_str("wgpu"),
            Self::Wgpu(WgpuAdapter::Discrete(n)) => write!(f, "wgpu:{n}"),
            Self::Wgpu(WgpuAdapter::Software) => f.write_str("wgpu:cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl FromStr for Device {
    type Err = ModelError;

    fn from_str(text: &str) -> Result<Self> {
        let invalid = |reason: &str| ModelError::InvalidInput {
            what: format!("device {text:?}"),
            reason: format!("{reason}; expected cpu, wgpu, wgpu:N, wgpu:cpu, cuda or cuda:N"),
        };
        let (kind, index) = match text.split_once(':') {
            Some((kind, index)) => (kind, Some(index)),
            None => (text, None),
        };
        let number = |index: &str| {
            index.parse::<usize>().map_err(|_| invalid(&format!("{index:?} is not a device index")))
        };
        match (kind, index) {
            ("cpu", None) => Ok(Self::Cpu),
            ("wgpu", None) => Ok(Self::Wgpu(WgpuAdapter::Best)),
            ("wgpu", Some("cpu")) => Ok(Self::Wgpu(WgpuAdapter::Software)),
            ("wgpu", Some(index)) => Ok(Self::Wgpu(WgpuAdapter::Discrete(number(index)?))),
            ("cuda", None) => Ok(Self::Cuda(0)),
            ("cuda", Some(index)) => Ok(Self::Cuda(number(index)?)),
            ("cpu", Some(_)) => Err(invalid("the CPU backend takes no index")),
            _ => Err(invalid(&format!("unknown backend {kind:?}"))),
        }
    }
}

/// Work that runs on whichever backend a [`Device`] selects: written once, generic over
/// the backend, and instantiated for each backend this binary was built with.
pub trait OnDevice {
    /// What the work returns.
    type Output;

    /// Runs the work on backend `B`, on `device`.
    fn run<B: TrainingBackend>(self, device: B::Device) -> Self::Output;
}

/// Runs `work` on `device`'s backend, after checking that the backend is built in and that the
/// device opens (a clear error rather than a panic deep inside the first tensor operation).
///
/// # Errors
/// [`ModelError::DeviceUnavailable`] when the binary lacks the backend or the device does not
/// exist or cannot be opened.
pub fn run_on<W: OnDevice>(device: Device, work: W) -> Result<W::Output> {
    device.check_built()?;
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    let unavailable =
        |reason: String| ModelError::DeviceUnavailable { device: device.to_string(), reason };
    match device {
        Device::Cpu => Ok(work.run::<crate::DefaultAutodiffBackend>(Default::default())),
        #[cfg(feature = "wgpu")]
        Device::Wgpu(adapter) => {
            use burn::backend::wgpu::WgpuDevice;
            let inner = match adapter {
                WgpuAdapter::Best => WgpuDevice::DefaultDevice,
                WgpuAdapter::Discrete(n) => WgpuDevice::DiscreteGpu(n),
                WgpuAdapter::Software => WgpuDevice::Cpu,
            };
            type W = burn::backend::Autodiff<burn::backend::Wgpu>;
            probe::<W>(&inner).map_err(unavailable)?;
            Ok(work.run::<W>(inner))
        }
        #[cfg(feature = "cuda")]
        Device::Cuda(n) => {
            let inner = burn::backend::cuda::CudaDevice::new(n);
            type C = burn::backend::Autodiff<burn::backend::Cuda>;
            probe::<C>(&inner).map_err(unavailable)?;
            Ok(work.run::<C>(inner))
        }
        #[allow(unreachable_patterns)]
        _ => unreachable!("device kinds not built in are refused above"),
    }
}

/// Opens `device` with one small computation and a read back. The GPU runtimes report a
/// missing device or driver by panicking, on the caller's thread or on the runtime's own
/// device thread (the caller then sees only a closed channel), so the panic hook is replaced
/// meanwhile by one that keeps the messages, and the first becomes the error.
#[allow(dead_code, reason = "used only by the GPU backends' features")]
fn probe<B: burn::prelude::Backend>(device: &B::Device) -> std::result::Result<(), String> {
    use std::sync::{Arc, Mutex};

    use burn::tensor::{ElementConversion, Tensor};

    let messages = Arc::new(Mutex::new(Vec::<String>::new()));
    let hook = std::panic::take_hook();
    let kept = Arc::clone(&messages);
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("the backend panicked without a message");
        if let Ok(mut kept) = kept.lock() {
            kept.push(message.to_owned());
        }
    }));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Tensor::<B, 1>::from_floats([1.0, 2.0, 3.0], device).sum().into_scalar().elem::<f32>()
    }));
    std::panic::set_hook(hook);
    let first = messages.lock().ok().and_then(|kept| kept.first().cloned());
    match outcome {
        Ok(6.0) => Ok(()),
        Ok(sum) => Err(format!("a test sum of 1 + 2 + 3 gave {sum}")),
        Err(_) => Err(first.unwrap_or_else(|| "the backend panicked without a message".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_form() {
        for (text, device) in [
            ("cpu", Device::Cpu),
            ("wgpu", Device::Wgpu(WgpuAdapter::Best)),
            ("wgpu:1", Device::Wgpu(WgpuAdapter::Discrete(1))),
            ("wgpu:cpu", Device::Wgpu(WgpuAdapter::Software)),
            ("cuda:0", Device::Cuda(0)),
            ("cuda:3", Device::Cuda(3)),
        ] {
            assert_eq!(text.parse::<Device>().expect(text), device);
            assert_eq!(device.to_string(), text);
        }
        assert_eq!("cuda".parse::<Device>().expect("cuda"), Device::Cuda(0));
    }

    #[test]
    fn bad_devices_are_named_in_the_error() {
        for text in ["gpu", "cpu:0", "cuda:x", "wgpu:-1", ""] {
            let error = text.parse::<Device>().expect_err(text).to_string();
            assert!(error.contains(&format!("{text:?}")), "{error}");
            assert!(error.contains("expected cpu, wgpu"), "{error}");
        }
    }

    #[test]
    fn a_backend_not_built_in_is_refused_with_the_feature_to_enable() {
        struct Nothing;
        impl OnDevice for Nothing {
            type Output = ();
            fn run<B: TrainingBackend>(self, _: B::Device) {}
        }
        for device in [Device::Wgpu(WgpuAdapter::Best), Device::Cuda(0)] {
            if device.kind().is_built() {
                continue;
            }
            let error = run_on(device, Nothing).expect_err("not built").to_string();
            assert!(error.contains(&format!("--features {}", device.kind())), "{error}");
        }
        run_on(Device::Cpu, Nothing).expect("cpu");
    }
}
