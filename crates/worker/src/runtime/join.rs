//! Joining the coordinator: the request, retries while it is unreachable, and the job it sends.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use albatross_proto::domain::{BuildInfo, JoinAccepted, JoinRequest, WorkerRef};
use albatross_proto::job::JobSpec;
use tokio_util::sync::CancellationToken;
use tonic::Code;

use super::client::CoordinatorClient;
use super::device_choice::{choose_device, device_kind};
use super::options::WorkerOptions;
use crate::error::{Result, WorkerError};

/// A new incarnation number: milliseconds since the epoch, so a restarted process always
/// outranks the one it replaces.
pub(crate) fn incarnation_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1))
}

/// Joins, retrying while the coordinator is unreachable; `None` when stopped meanwhile.
/// `applied_step` is the step this worker's state holds, once it has a model.
pub(crate) async fn join(
    client: &CoordinatorClient,
    me: &WorkerRef,
    advertise: &str,
    options: &WorkerOptions,
    applied_step: Option<u64>,
    stop: &CancellationToken,
) -> Result<Option<JoinAccepted>> {
    let request = JoinRequest {
        worker: me.clone(),
        advertise_address: advertise.to_owned(),
        build: BuildInfo::current(),
        expected_job_fingerprint: options.expected_job.as_ref().map(JobSpec::fingerprint),
        data_fingerprint: None,
        applied_step,
        kernel_set: Some(albatross_model::kernel_set(declared_device(options)?)),
    };
    let mut backoff = Duration::from_millis(100);
    let mut attempts = 0u32;
    loop {
        if stop.is_cancelled() {
            return Ok(None);
        }
        attempts += 1;
        match client.join(request.clone()).await {
            Ok(accepted) => {
                tracing::info!(
                    worker = %me,
                    generation = %accepted.generation,
                    committed_step = accepted.committed_step,
                    instance = %accepted.coordinator_instance,
                    "joined"
                );
                return Ok(Some(accepted));
            }
            Err(WorkerError::Rpc { code, .. }) if retryable(code) => {}
            Err(e) => return Err(e),
        }
        if attempts == 5 || attempts.is_multiple_of(50) {
            tracing::warn!(attempts, coordinator = %options.coordinator, "coordinator not reachable yet; retrying");
        }
        // Jittered exponential backoff, so a restarted coordinator is not stampeded.
        tokio::select! {
            () = stop.cancelled() => return Ok(None),
            () = tokio::time::sleep(backoff.mul_f64(albatross_collective::jitter())) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// The device this worker declares (its kernel set) at join, before it has the job: `--device`,
/// else the device kind of the job it was started with, else the CPU. [`check_kernel_set`]
/// refuses to run when the coordinator's job then picks another.
pub(crate) fn declared_device(options: &WorkerOptions) -> Result<albatross_model::Device> {
    let pinned = options.expected_job.as_ref().and_then(|job| job.compute.device);
    choose_device(options.device, pinned.map(device_kind))
}

/// In exact mode, the device the job makes this worker use must run the kernel set it declared
/// at join (the coordinator admitted it for that one).
pub(crate) fn check_kernel_set(
    job: &JobSpec,
    options: &WorkerOptions,
    device: albatross_model::Device,
) -> Result<()> {
    let declared = albatross_model::kernel_set(declared_device(options)?);
    let runs = albatross_model::kernel_set(device);
    if job.determinism.exact && declared != runs {
        return Err(WorkerError::Setup(format!(
            "joined an exact-mode job declaring kernel set {declared}, but the job's device kind \
             makes it run {runs}; start it with --device {device}"
        )));
    }
    Ok(())
}

/// Errors that mean "the coordinator is not there right now", worth retrying.
pub(crate) fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::Cancelled
            | Code::Internal
    )
}

/// The job the coordinator sent at join, checked against its fingerprint.
pub(crate) fn job_of(accepted: &JoinAccepted) -> Result<JobSpec> {
    let job =
        JobSpec::from_toml_str(&accepted.job_spec_toml, "the coordinator's job").map_err(|e| {
            WorkerError::Setup(format!("the coordinator sent a job this build refuses: {e}"))
        })?;
    let job_fingerprint = job.fingerprint();
    if job_fingerprint != accepted.job_fingerprint {
        return Err(WorkerError::Setup(format!(
            "the coordinator's job fingerprint {} does not match its job text ({job_fingerprint})",
            accepted.job_fingerprint
        )));
    }
    Ok(job)
}
