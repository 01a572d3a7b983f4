//! Fault-injection hooks for the fault tests, read from `ALBATROSS_TEST_HOOKS`
//! (`nan_at_step=5,slow_compute_ms=3000,pause_at=before-vote@3,pause_ms=4000`). Off unless set;
//! a malformed value is an error, never silently ignored.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{Result, WorkerError};

/// The environment variable the hooks are read from.
pub const ENV: &str = "ALBATROSS_TEST_HOOKS";

/// Where in a step a worker can be held, so that a test can kill it exactly there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PausePoint {
    /// The quorum formed; nothing computed yet.
    AfterQuorum,
    /// Inside the computation (the pause is extra compute time, cancellable like the rest).
    MidCompute,
    /// Before taking part in the all-reduce: the peers are inside it, waiting for this one.
    BeforeReduce,
    /// After the all-reduce, before voting: the peers have voted and wait for the decision.
    BeforeVote,
    /// The step committed; the update is not applied yet.
    BeforeApply,
}

impl PausePoint {
    const ALL: [(&'static str, Self); 5] = [
        ("after-quorum", Self::AfterQuorum),
        ("mid-compute", Self::MidCompute),
        ("before-reduce", Self::BeforeReduce),
        ("before-vote", Self::BeforeVote),
        ("before-apply", Self::BeforeApply),
    ];
}

impl fmt::Display for PausePoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AfterQuorum => "after the quorum",
            Self::MidCompute => "in the middle of the computation",
            Self::BeforeReduce => "before the all-reduce",
            Self::BeforeVote => "before the vote",
            Self::BeforeApply => "before applying the committed update",
        })
    }
}

impl FromStr for PausePoint {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Self::ALL.iter().find(|(name, _)| *name == s).map(|(_, p)| *p).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|(n, _)| *n).collect();
            format!("is not a pause point ({})", names.join(", "))
        })
    }
}

/// Faults a worker injects into itself, each at most once (`slow_compute` on every step).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestHooks {
    /// Write a NaN into this worker's gradients of this step.
    pub nan_at_step: Option<u64>,
    /// Log `test hook: pausing <point> of step <n>` and wait `pause` at that point of that
    /// step, so a test can kill this process exactly there.
    pub pause_at: Option<(PausePoint, u64)>,
    pub pause: Duration,
    /// Every computation takes this much longer (cancellable, like the model's own work): a
    /// tiny model with the step length of a large one.
    pub slow_compute: Duration,
}

impl TestHooks {
    /// Parses `key=value` pairs separated by commas.
    ///
    /// # Errors
    /// An unknown key, or a value of the wrong form.
    pub fn parse(text: &str) -> Result<Self> {
        let mut hooks = Self { pause: Duration::from_secs(5), ..Self::default() };
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = |why: &str| WorkerError::Setup(format!("{ENV}: {pair:?} {why}"));
            let (key, value) = pair.split_once('=').ok_or_else(|| bad("is not key=value"))?;
            let value = value.trim();
            let number = || value.parse::<u64>().map_err(|_| bad("needs a whole number"));
            match key.trim() {
                "nan_at_step" => hooks.nan_at_step = Some(number()?),
                // The older spelling of `pause_at=before-reduce@N`.
                "pause_before_reduce_at_step" => {
                    hooks.pause_at = Some((PausePoint::BeforeReduce, number()?));
                }
                "pause_at" => {
                    let (point, step) =
                        value.split_once('@').ok_or_else(|| bad("is not POINT@STEP"))?;
                    let point: PausePoint = point.parse().map_err(|why: String| bad(&why))?;
                    let step = step.parse().map_err(|_| bad("needs a whole step number"))?;
                    hooks.pause_at = Some((point, step));
                }
                "pause_ms" => hooks.pause = Duration::from_millis(number()?),
                "slow_compute_ms" => hooks.slow_compute = Duration::from_millis(number()?),
                _ => {
                    return Err(bad("is unknown (nan_at_step, pause_at, \
                         pause_before_reduce_at_step, pause_ms, slow_compute_ms)"));
                }
            }
        }
        Ok(hooks)
    }

    /// The hooks of this process's environment (none when the variable is unset).
    ///
    /// # Errors
    /// As [`Self::parse`].
    pub fn from_env() -> Result<Self> {
        match std::env::var(ENV) {
            Ok(text) => Self::parse(&text),
            Err(_) => Ok(Self::default()),
        }
    }

    /// The pause to take at `point` of `step`, once: it is disarmed when taken.
    pub fn take_pause(&mut self, point: PausePoint, step: u64) -> Option<Duration> {
        if self.pause_at != Some((point, step)) {
            return None;
        }
        self.pause_at = None;
        tracing::warn!(pause = ?self.pause, "test hook: pausing {point} of step {step}");
        Some(self.pause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_and_refuses_unknown_keys() {
        let hooks = TestHooks::parse("nan_at_step=5, pause_before_reduce_at_step=3,pause_ms=250")
            .expect("valid");
        assert_eq!(hooks.nan_at_step, Some(5));
        assert_eq!(hooks.pause_at, Some((PausePoint::BeforeReduce, 3)));
        assert_eq!(hooks.pause, Duration::from_millis(250));
        assert_eq!(TestHooks::parse("").expect("empty").nan_at_step, None);
        let err = TestHooks::parse("nan_at=5").expect_err("unknown key");
        assert!(err.to_string().contains("nan_at=5"), "{err}");
        assert!(TestHooks::parse("nan_at_step=x").is_err());
    }

    #[test]
    fn pause_points_and_slow_compute_parse_and_a_pause_fires_once() {
        let mut hooks =
            TestHooks::parse("pause_at=before-vote@4,slow_compute_ms=3000").expect("valid");
        assert_eq!(hooks.slow_compute, Duration::from_secs(3));
        assert_eq!(hooks.take_pause(PausePoint::BeforeVote, 3), None);
        assert_eq!(hooks.take_pause(PausePoint::BeforeApply, 4), None);
        assert_eq!(hooks.take_pause(PausePoint::BeforeVote, 4), Some(Duration::from_secs(5)));
        assert_eq!(hooks.take_pause(PausePoint::BeforeVote, 4), None, "once");
        for (text, expected) in [
            ("pause_at=mid-lunch@3", "is not a pause point (after-quorum, mid-compute"),
            ("pause_at=before-vote", "POINT@STEP"),
            ("pause_at=before-vote@x", "whole step number"),
            ("slow_compute_ms=fast", "whole number"),
        ] {
            let err = TestHooks::parse(text).expect_err(text);
            assert!(err.to_string().contains(expected), "{text}: {err}");
        }
    }
}
