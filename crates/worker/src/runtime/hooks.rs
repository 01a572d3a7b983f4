//! Fault-injection hooks for the fault tests, read from `ALBATROSS_TEST_HOOKS`
//! (`nan_at_step=5,pause_before_reduce_at_step=3,pause_ms=4000`). Off unless set; a malformed
//! value is an error, never silently ignored.

use std::time::Duration;

use crate::error::{Result, WorkerError};

/// The environment variable the hooks are read from.
pub const ENV: &str = "ALBATROSS_TEST_HOOKS";

/// Faults a worker injects into itself, each at most once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestHooks {
    /// Write a NaN into this worker's gradients of this step.
    pub nan_at_step: Option<u64>,
    /// Before taking part in this step's all-reduce, log `test hook: pausing before the
    /// all-reduce` and sleep `pause`: the peers are inside the all-reduce meanwhile, so a test
    /// can kill this process exactly then.
    pub pause_before_reduce_at_step: Option<u64>,
    pub pause: Duration,
}

impl TestHooks {
    /// Parses `key=value` pairs separated by commas.
    ///
    /// # Errors
    /// An unknown key or a value that is not a number.
    pub fn parse(text: &str) -> Result<Self> {
        let mut hooks = Self { pause: Duration::from_secs(5), ..Self::default() };
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = |why: &str| WorkerError::Setup(format!("{ENV}: {pair:?} {why}"));
            let (key, value) = pair.split_once('=').ok_or_else(|| bad("is not key=value"))?;
            let number: u64 = value.trim().parse().map_err(|_| bad("needs a whole number"))?;
            match key.trim() {
                "nan_at_step" => hooks.nan_at_step = Some(number),
                "pause_before_reduce_at_step" => hooks.pause_before_reduce_at_step = Some(number),
                "pause_ms" => hooks.pause = Duration::from_millis(number),
                _ => {
                    return Err(bad(
                        "is unknown (nan_at_step, pause_before_reduce_at_step, pause_ms)",
                    ));
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_and_refuses_unknown_keys() {
        let hooks = TestHooks::parse("nan_at_step=5, pause_before_reduce_at_step=3,pause_ms=250")
            .expect("valid");
        assert_eq!(hooks.nan_at_step, Some(5));
        assert_eq!(hooks.pause_before_reduce_at_step, Some(3));
        assert_eq!(hooks.pause, Duration::from_millis(250));
        assert_eq!(TestHooks::parse("").expect("empty").nan_at_step, None);
        let err = TestHooks::parse("nan_at=5").expect_err("unknown key");
        assert!(err.to_string().contains("nan_at=5"), "{err}");
        assert!(TestHooks::parse("nan_at_step=x").is_err());
    }
}
