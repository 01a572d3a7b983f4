//! Joining the coordinator: the request, retries while it is unreachable, and the job it sends.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use albatross_proto::domain::{BuildInfo, JoinAccepted, JoinRequest, WorkerRef};
use albatross_proto::job::JobSpec;
use tokio_util::sync::CancellationToken;
use tonic::Code;

use super::client::CoordinatorClient;
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
