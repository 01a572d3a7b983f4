//! Failure detection: heartbeat timeouts, the step deadline, and verified peer-failure reports.

use std::time::Instant;

use albatross_proto::domain::{Generation, PeerFailureReport, WorkerRef};

use crate::core::{Core, clip};
use crate::effect::Effect;
use crate::error::CoordinatorError;

impl Core {
    /// Time passes: evict silent workers, abort a step past its deadline, form a quorum whose
    /// join grace expired.
    pub fn tick(&mut self, now: Instant) {
        self.note_restart(now);
        let timeout = self.cfg.heartbeat_timeout;
        for (worker, silent) in self.members.silent(now, timeout) {
            let reason = format!("no heartbeat for {silent:?} (timeout {timeout:?})");
            self.evict(now, &worker, reason, silent);
        }
        if let Some(active) = &self.active
            && now.saturating_duration_since(active.started) > self.cfg.step_deadline
        {
            let missing: Vec<String> = active
                .members
                .iter()
                .filter(|m| !active.votes.contains_key(&m.worker.id))
                .map(|m| m.worker.to_string())
                .collect();
            let reason = format!(
                "step deadline of {:?} passed without votes from {}",
                self.cfg.step_deadline,
                missing.join(", ")
            );
            self.abort(now, reason, Vec::new());
        }
        self.try_form(now);
    }

    /// Fast-path failure detection. The report is confirmed, and the suspect evicted, when the
    /// suspect has missed a heartbeat or a second member reported it too.
    ///
    /// # Errors
    /// A stale or unknown reporter, a stale generation, or a reporter or suspect outside the
    /// running quorum.
    pub fn report_peer_failure(
        &mut self,
        now: Instant,
        report: &PeerFailureReport,
    ) -> Result<(bool, Generation), CoordinatorError> {
        self.members.get_mut(&report.reporter)?.last_heard = now;
        let active = self.check_running(&report.tag)?;
        for who in [&report.reporter, &report.suspect] {
            if active.rank_of(who).is_none() {
                return Err(CoordinatorError::NotAMember { worker: who.clone(), tag: report.tag });
            }
        }
        let silent = self
            .members
            .by_id(&report.suspect.id)
            .map(|m| now.saturating_duration_since(m.last_heard))
            .unwrap_or_default();
        let reporters = self.suspicions.entry(report.suspect.id.clone()).or_default();
        reporters.insert(report.reporter.id.clone());
        let confirmation = if silent > self.cfg.heartbeat_interval {
            Some(format!("silent for {silent:?}"))
        } else if reporters.len() >= 2 {
            Some(format!("reported by {} members", reporters.len()))
        } else {
            None
        };
        let Some(confirmation) = confirmation else {
            self.effects.push(Effect::SuspicionNotConfirmed {
                reporter: report.reporter.clone(),
                suspect: report.suspect.clone(),
                reason: format!("{}; last heartbeat {silent:?} ago", clip(&report.reason)),
            });
            return Ok((false, self.durable.generation));
        };
        let reason =
            format!("reported by {}: {}; {confirmation}", report.reporter, clip(&report.reason));
        self.evict(now, &report.suspect, reason, silent);
        Ok((true, self.durable.generation))
    }

    /// Remove a dead worker; abort the running step if it was a member.
    pub(crate) fn evict(
        &mut self,
        now: Instant,
        worker: &WorkerRef,
        reason: String,
        detected_after: std::time::Duration,
    ) {
        if self.members.remove(&worker.id).is_none() {
            return;
        }
        self.effects.push(Effect::Evicted {
            worker: worker.clone(),
            reason: reason.clone(),
            detected_after,
        });
        self.member_lost(now, worker, format!("{worker} evicted: {reason}"));
    }

    /// `worker` is gone (evicted, left, replaced by its restart): if it was a member of the
    /// running step or of the last quorum, training is disrupted, and a running step it
    /// belonged to is aborted.
    pub(crate) fn member_lost(&mut self, now: Instant, worker: &WorkerRef, reason: String) {
        if self.was_member(worker) {
            self.disrupted(now, reason.clone());
        }
        if self.active.as_ref().is_some_and(|a| a.rank_of(worker).is_some()) {
            self.abort(now, reason, Vec::new());
        }
    }
}
