//! Which device a worker's model runs on.

use albatross_model::{Device, DeviceKind};

use crate::error::{Result, WorkerError};

/// The model's name for the job spec's device kind.
pub(crate) fn device_kind(kind: albatross_proto::job::ComputeDevice) -> DeviceKind {
    use albatross_proto::job::ComputeDevice as Job;
    match kind {
        Job::Cpu => DeviceKind::Cpu,
        Job::Wgpu => DeviceKind::Wgpu,
        Job::Cuda => DeviceKind::Cuda,
    }
}

/// The device the worker runs on: `--device`, else the job's pinned kind, else the CPU. A
/// `--device` of another kind than the job pins is refused, naming both.
pub(crate) fn choose_device(asked: Option<Device>, pinned: Option<DeviceKind>) -> Result<Device> {
    match (asked, pinned) {
        (Some(device), Some(kind)) if device.kind() != kind => Err(WorkerError::Setup(format!(
            "--device {device} is a {} device, but the job pins the device kind {kind} \
             ([compute] device in the job spec)",
            device.kind()
        ))),
        (Some(device), _) => Ok(device),
        (None, Some(DeviceKind::Cpu) | None) => Ok(Device::Cpu),
        (None, Some(DeviceKind::Wgpu)) => Ok(Device::Wgpu(albatross_model::WgpuAdapter::Best)),
        (None, Some(DeviceKind::Cuda)) => Ok(Device::Cuda(0)),
    }
}

#[cfg(test)]
mod tests {
    use albatross_model::WgpuAdapter;

    use super::*;

    #[test]
    fn the_device_is_the_flag_else_the_jobs_kind_else_the_cpu_and_a_clash_is_refused() {
        let cuda1 = Device::Cuda(1);
        assert_eq!(choose_device(Some(cuda1), None).expect("flag"), cuda1);
        assert_eq!(choose_device(Some(cuda1), Some(DeviceKind::Cuda)).expect("same kind"), cuda1);
        assert_eq!(choose_device(None, None).expect("default"), Device::Cpu);
        assert_eq!(choose_device(None, Some(DeviceKind::Cuda)).expect("pinned"), Device::Cuda(0));
        assert_eq!(
            choose_device(None, Some(DeviceKind::Wgpu)).expect("pinned"),
            Device::Wgpu(WgpuAdapter::Best)
        );
        let clash = choose_device(Some(Device::Cpu), Some(DeviceKind::Cuda)).expect_err("clash");
        let text = clash.to_string();
        assert!(
            text.contains("--device cpu") && text.contains("pins the device kind cuda"),
            "{text}"
        );
    }
}
