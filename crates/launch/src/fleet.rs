//! The worker processes of a launch: how many, their compute threads, their devices and names.

use albatross_model::Device;

/// The worker processes of a launch: how many, their compute threads and their devices.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub workers: usize,
    pub threads: usize,
    /// One per worker, or empty: each worker takes the job's pinned kind, else the CPU.
    pub devices: Vec<Device>,
}

impl Fleet {
    /// From `--workers`, `--threads-per-worker`, `--device` (every worker) and `--devices` (one
    /// per worker). Backends this binary lacks are refused here, before any process starts.
    pub fn new(
        workers: usize,
        threads: Option<usize>,
        device: Option<Device>,
        devices: &[Device],
    ) -> anyhow::Result<Self> {
        let devices = match device {
            Some(device) => vec![device; workers],
            None => devices.to_vec(),
        };
        anyhow::ensure!(
            devices.is_empty() || devices.len() == workers,
            "--devices names {} devices for {workers} workers: give one per worker",
            devices.len()
        );
        for device in &devices {
            device.check_built()?;
        }
        Ok(Self { workers, threads: threads_for(workers, threads), devices })
    }
}

pub fn threads_for(workers: usize, asked: Option<usize>) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    asked.unwrap_or((cores / workers.max(1)).max(1))
}

/// The name of worker `i` (its log, its report, its id in the job).
pub fn worker_name(i: usize) -> String {
    format!("worker-{i}")
}
