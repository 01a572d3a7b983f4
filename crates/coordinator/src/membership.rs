//! The registry of workers: who joined under which incarnation, when each was last heard from,
//! what each holds. Keyed by worker id, so iteration order is the stable ring order.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use albatross_proto::domain::{StateHash, WorkerId, WorkerPhase, WorkerRef};

use crate::error::CoordinatorError;

/// An outstanding quorum request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiting {
    pub step: u64,
    /// When the worker first asked for this step.
    pub since: Instant,
}

/// One registered worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberState {
    pub worker: WorkerRef,
    /// `host:port` of its PeerService.
    pub address: String,
    pub last_heard: Instant,
    pub phase: WorkerPhase,
    /// The last step whose update the worker holds, once it has told us.
    pub applied_step: Option<u64>,
    pub state_hash: Option<StateHash>,
    /// Its state hash disagreed in a vote: it must heal before it counts as up to date.
    pub must_heal: bool,
    pub waiting: Option<Waiting>,
    /// Member of the last quorum formed (this incarnation).
    pub in_last_quorum: bool,
}

impl MemberState {
    /// Whether this worker holds `step` and may serve it: it said so (or voted it in), and its
    /// state hash has not disagreed with the majority's since.
    pub fn holds(&self, step: u64) -> bool {
        self.applied_step == Some(step) && !self.must_heal
    }
}

/// What a join did to the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    New,
    /// The same incarnation joined again (a retried call): nothing changed.
    Again,
    /// A higher incarnation replaced this old one.
    Replaced(WorkerRef),
}

/// All registered workers, in ring order.
#[derive(Debug, Default)]
pub struct Membership {
    members: BTreeMap<WorkerId, MemberState>,
}

impl Membership {
    /// Register `worker`, or replace an older incarnation of it.
    ///
    /// # Errors
    /// [`CoordinatorError::StaleIncarnation`] for an incarnation below the registered one;
    /// [`CoordinatorError::TooManyWorkers`] when `limit` workers are registered already.
    pub fn admit(
        &mut self,
        worker: &WorkerRef,
        address: &str,
        now: Instant,
        limit: usize,
    ) -> Result<Admission, CoordinatorError> {
        let fresh = MemberState {
            worker: worker.clone(),
            address: address.to_owned(),
            last_heard: now,
            phase: WorkerPhase::Idle,
            applied_step: None,
            state_hash: None,
            must_heal: false,
            waiting: None,
            in_last_quorum: false,
        };
        let registered = self.members.len();
        match self.members.get_mut(&worker.id) {
            Some(m) if worker.incarnation < m.worker.incarnation => {
                Err(CoordinatorError::StaleIncarnation {
                    sent: worker.clone(),
                    current: m.worker.incarnation,
                })
            }
            Some(m) if worker.incarnation == m.worker.incarnation => {
                m.address = address.to_owned();
                m.last_heard = now;
                Ok(Admission::Again)
            }
            Some(m) => {
                let old = std::mem::replace(m, fresh);
                Ok(Admission::Replaced(old.worker))
            }
            None if registered >= limit => {
                Err(CoordinatorError::TooManyWorkers { worker: worker.clone(), registered })
            }
            None => {
                self.members.insert(worker.id.clone(), fresh);
                Ok(Admission::New)
            }
        }
    }

    /// The registered state of exactly this incarnation.
    ///
    /// # Errors
    /// [`CoordinatorError::UnknownWorker`] or [`CoordinatorError::StaleIncarnation`].
    pub fn get_mut(&mut self, worker: &WorkerRef) -> Result<&mut MemberState, CoordinatorError> {
        match self.members.get_mut(&worker.id) {
            None => Err(CoordinatorError::UnknownWorker(worker.id.clone())),
            Some(m) if m.worker.incarnation != worker.incarnation => {
                Err(CoordinatorError::StaleIncarnation {
                    sent: worker.clone(),
                    current: m.worker.incarnation,
                })
            }
            Some(m) => Ok(m),
        }
    }

    pub fn by_id(&self, id: &WorkerId) -> Option<&MemberState> {
        self.members.get(id)
    }

    pub fn by_id_mut(&mut self, id: &WorkerId) -> Option<&mut MemberState> {
        self.members.get_mut(id)
    }

    pub fn remove(&mut self, id: &WorkerId) -> Option<MemberState> {
        self.members.remove(id)
    }

    /// Every registered worker in ring order.
    pub fn iter(&self) -> impl Iterator<Item = &MemberState> {
        self.members.values()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut MemberState> {
        self.members.values_mut()
    }

    /// Workers not heard from for longer than `timeout`, with how long they were silent.
    pub fn silent(&self, now: Instant, timeout: Duration) -> Vec<(WorkerRef, Duration)> {
        self.members
            .values()
            .filter_map(|m| {
                let silent = now.saturating_duration_since(m.last_heard);
                (silent > timeout).then(|| (m.worker.clone(), silent))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(id: &str, incarnation: u64) -> WorkerRef {
        WorkerRef { id: WorkerId::new(id).expect("valid id"), incarnation }
    }

    #[test]
    fn incarnations_replace_upwards_only() {
        let t0 = Instant::now();
        let mut m = Membership::default();
        assert_eq!(m.admit(&w("a", 2), "h:1", t0, 8).ok(), Some(Admission::New));
        assert_eq!(m.admit(&w("a", 2), "h:2", t0, 8).ok(), Some(Admission::Again));
        assert_eq!(m.admit(&w("a", 5), "h:3", t0, 8).ok(), Some(Admission::Replaced(w("a", 2))));
        let err = m.admit(&w("a", 4), "h:4", t0, 8).expect_err("lower incarnation");
        assert_eq!(err.to_string(), "worker a#4 is stale: incarnation 5 has joined since");
        assert!(matches!(m.get_mut(&w("a", 2)), Err(CoordinatorError::StaleIncarnation { .. })));
        assert!(matches!(m.get_mut(&w("b", 1)), Err(CoordinatorError::UnknownWorker(_))));
        assert_eq!(m.get_mut(&w("a", 5)).map(|s| s.address.clone()).ok(), Some("h:3".into()));
    }

    #[test]
    fn ring_order_is_by_id_and_registry_is_bounded() {
        let t0 = Instant::now();
        let mut m = Membership::default();
        for id in ["c", "a", "b"] {
            m.admit(&w(id, 1), "h:1", t0, 3).expect("room");
        }
        let order: Vec<_> = m.iter().map(|s| s.worker.id.to_string()).collect();
        assert_eq!(order, ["a", "b", "c"]);
        assert!(matches!(
            m.admit(&w("d", 1), "h:1", t0, 3),
            Err(CoordinatorError::TooManyWorkers { registered: 3, .. })
        ));
    }

    #[test]
    fn silent_lists_workers_past_the_timeout() {
        let t0 = Instant::now();
        let mut m = Membership::default();
        m.admit(&w("a", 1), "h:1", t0, 8).expect("room");
        m.admit(&w("b", 1), "h:1", t0 + Duration::from_secs(3), 8).expect("room");
        let now = t0 + Duration::from_secs(6);
        assert_eq!(
            m.silent(now, Duration::from_secs(5)),
            vec![(w("a", 1), Duration::from_secs(6))]
        );
    }
}
