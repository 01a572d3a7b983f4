//! Injecting the scheduled faults into a running cluster, and undoing the timed ones.

use std::time::Instant;

use anyhow::bail;
use indicatif::ProgressBar;
use nix::sys::signal::Signal;

use super::Cluster;
use super::process::signal;
use crate::chaos::{Fault, FaultKind, Injection, Target};
use crate::netfault::NetFault;
use crate::summary::{MetricsLine, unix_ms};

impl Cluster {
    pub(super) fn inject_due(
        &mut self,
        lines: &[MetricsLine],
        bar: &ProgressBar,
    ) -> anyhow::Result<()> {
        let last_step = lines.last().map_or(0, |l| l.step);
        let now = unix_ms();
        let due = |f: &Fault| {
            lines.iter().find(|l| l.step >= f.at_step).is_some_and(|l| {
                now >= l
                    .unix_ms
                    .saturating_add(u64::try_from(f.delay.as_millis()).unwrap_or(u64::MAX))
            })
        };
        while let Some(index) = self.faults.iter().position(&due) {
            let fault = self.faults.remove(index);
            let injection = Injection {
                kind: fault.kind_name(),
                target: fault.target_name(),
                scheduled_step: fault.at_step,
                injected_after_step: last_step,
                unix_ms: unix_ms(),
            };
            match (fault.kind, fault.target) {
                (FaultKind::Kill, Target::Coordinator) => {
                    signal(&self.coordinator, Signal::SIGKILL);
                    self.coordinator_killed = true;
                }
                (FaultKind::Net { fault, duration }, target) => {
                    self.impair(&target, &fault);
                    self.impaired.push((target, Instant::now() + duration));
                }
                (kind, Target::Worker(i)) => {
                    let w = &mut self.workers[i];
                    let Some(child) = w.child.as_ref() else {
                        // Already down (restarting, or finished): nothing to hit.
                        continue;
                    };
                    match kind {
                        FaultKind::Kill => {
                            w.chaos_exit = true;
                            signal(child, Signal::SIGKILL);
                        }
                        FaultKind::Term => {
                            w.chaos_exit = true;
                            signal(child, Signal::SIGTERM);
                        }
                        FaultKind::Pause(d) => {
                            signal(child, Signal::SIGSTOP);
                            self.paused.push((i, Instant::now() + d));
                        }
                        other => bail!("{other:?} does not apply to a worker process"),
                    }
                }
                (kind, target) => bail!("{kind:?} does not apply to {target:?}"),
            }
            bar.println(format!(
                "chaos: {} {} after step {last_step}",
                injection.kind, injection.target
            ));
            tracing::info!(kind = injection.kind, target = %injection.target, after_step = last_step, "fault injected");
            self.injections.push(injection);
        }
        Ok(())
    }

    /// Sets `fault` on the links of `target`: a worker's own links, or every worker's link
    /// to the coordinator.
    fn impair(&self, target: &Target, fault: &NetFault) {
        match target {
            Target::Worker(i) => {
                if let Some(links) = self.links.get(*i) {
                    links.set(fault);
                }
            }
            Target::Coordinator => {
                for links in &self.links {
                    links.to_coordinator.set(fault.clone());
                }
            }
            Target::LatestCheckpoint => {}
        }
    }

    /// Heals the network faults whose time is up.
    pub(super) fn heal_networks(&mut self, all: bool) {
        let now = Instant::now();
        let (due, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.impaired)
            .into_iter()
            .partition(|(_, until)| all || *until <= now);
        self.impaired = kept;
        for (target, _) in due {
            self.impair(&target, &NetFault::None);
            tracing::info!(?target, "network fault healed");
        }
    }

    pub(super) fn continue_paused(&mut self) {
        let now = Instant::now();
        let workers = &self.workers;
        self.paused.retain(|(i, until)| {
            if *until > now {
                return true;
            }
            if let Some(child) = workers[*i].child.as_ref() {
                signal(child, Signal::SIGCONT);
            }
            false
        });
    }
}
