//! Checkpoint reports: the member asked to write a checkpoint says how it went.

use std::time::Instant;

use albatross_proto::domain::CheckpointReport;
use tracing::info;

use crate::core::Core;
use crate::effect::Effect;
use crate::error::CoordinatorError;

impl Core {
    /// A member wrote (or failed to write) the checkpoint it was asked for.
    ///
    /// # Errors
    /// When no such checkpoint was asked of this worker, or its cursor is not the committed one.
    pub fn report_checkpoint(
        &mut self,
        now: Instant,
        report: &CheckpointReport,
    ) -> Result<(), CoordinatorError> {
        self.members.get_mut(&report.worker)?.last_heard = now;
        let step = report.checkpoint.step;
        let pending = match &self.pending_checkpoint {
            Some(p) if p.worker == report.worker && p.directive.step == step => p.clone(),
            _ => {
                return Err(CoordinatorError::InvalidArgument(format!(
                    "no checkpoint of step {step} was asked of {}",
                    report.worker
                )));
            }
        };
        match &report.result {
            Ok(()) if report.checkpoint.cursor != pending.cursor => {
                return Err(CoordinatorError::InvalidArgument(format!(
                    "checkpoint of step {step} has cursor {:?}, but the step committed at {:?}",
                    report.checkpoint.cursor, pending.cursor
                )));
            }
            Ok(()) => {
                info!(step, path = %report.checkpoint.path, "checkpoint recorded");
                let newer = self.durable.latest_checkpoint.as_ref().is_none_or(|c| c.step < step);
                if newer {
                    self.durable.latest_checkpoint = Some(report.checkpoint.clone());
                }
                self.effects
                    .push(Effect::CheckpointRecorded { checkpoint: report.checkpoint.clone() });
            }
            Err(error) => self.effects.push(Effect::CheckpointFailed {
                worker: report.worker.clone(),
                step,
                error: crate::core::clip(error).to_owned(),
            }),
        }
        self.pending_checkpoint = None;
        Ok(())
    }
}
