//! Cooperative cancellation of a forward and backward pass.
//!
//! A training step that the coordinator aborted must stop computing within a bounded time,
//! whatever the model size: its gradients will be thrown away, and the worker is wanted for the
//! next quorum. burn's backward pass is one call that runs the whole graph, with no way to stop
//! it from outside. So the model's arithmetic stops itself instead: while the computation runs
//! under [`run_cancellable`] and its [`CancelFlag`] is set, every fused operation (the linear
//! maps, the attention's products and softmax, `gelu_new`, the layer norms, the head split
//! and merge) skips its work and returns zeros of the right shape ([`requested`]); the
//! backend's zeros cost no memory traffic (Flex: one zero seen through stride-0 strides). The
//! pass still runs to its end through burn's own graph, which stays consistent and frees
//! everything as usual; what is left are burn's own ops (residual sums, gradient
//! accumulation, embeddings, the loss). `run_cancellable` then reports [`Cancelled`] rather
//! than the meaningless result, and the caller checks [`requested`] between micro-batches so
//! no new pass starts. `albatross bench step --cancel-at 0.02,0.5` measures what a cancelled
//! pass still costs.
//!
//! Unwinding out of the pass (a panic caught at the top) would stop sooner, but burn's
//! autodiff skips its graph cleanup when a backward pass unwinds: measured here, every
//! cancelled backward pass of the tiny model leaked about 20 KB for good.
//!
//! Outside `run_cancellable`, [`requested`] is false (evaluation, export, tests).

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once to cancel the computations running under it; shared between the thread that
/// computes and whoever decides to cancel.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask every computation under this flag to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The computation was cancelled before it finished; its partial results were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the computation was cancelled")]
pub struct Cancelled;

thread_local! {
    /// The flag of the innermost `run_cancellable` on this thread.
    static CURRENT: RefCell<Option<CancelFlag>> = const { RefCell::new(None) };
}

/// Runs `f` on this thread under `flag`: once the flag is set, the fused operations inside `f`
/// skip their work, and the result is thrown away.
///
/// # Errors
/// [`Cancelled`] when `flag` was set before `f` returned (or before the call: `f` does not run).
pub fn run_cancellable<T>(flag: &CancelFlag, f: impl FnOnce() -> T) -> Result<T, Cancelled> {
    if flag.is_cancelled() {
        return Err(Cancelled);
    }
    // Restores the outer flag however `f` ends (a panic included).
    struct Restore(Option<CancelFlag>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let outer = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = outer);
        }
    }
    let restore = Restore(CURRENT.with(|c| c.replace(Some(flag.clone()))));
    let value = f();
    drop(restore);
    if flag.is_cancelled() { Err(Cancelled) } else { Ok(value) }
}

/// Whether the computation running on this thread was cancelled: its remaining work is
/// wasted. One thread-local read and one atomic load.
pub fn requested() -> bool {
    CURRENT.with(|c| c.borrow().as_ref().is_some_and(CancelFlag::is_cancelled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_flag_is_seen_inside_and_the_result_is_dropped() {
        let flag = CancelFlag::new();
        let mut seen = Vec::new();
        let result = run_cancellable(&flag, || {
            for i in 0..4 {
                seen.push(requested());
                if i == 1 {
                    flag.cancel();
                }
            }
            7
        });
        assert_eq!(result, Err(Cancelled));
        assert_eq!(seen, [false, false, true, true]);
        // Outside a cancellable run nothing is requested, even with a set flag around.
        assert!(!requested());
    }

    #[test]
    fn an_unset_flag_returns_the_value_and_a_set_one_never_starts() {
        let flag = CancelFlag::new();
        assert_eq!(run_cancellable(&flag, || 7), Ok(7));
        flag.cancel();
        let mut ran = false;
        assert_eq!(run_cancellable(&flag, || ran = true), Err(Cancelled));
        assert!(!ran);
    }

    #[test]
    fn flags_nest() {
        let outer = CancelFlag::new();
        let inner = CancelFlag::new();
        let result = run_cancellable(&outer, || {
            inner.cancel();
            assert_eq!(run_cancellable(&inner, requested), Err(Cancelled));
            // Back under the outer flag, which is not set.
            requested()
        });
        assert_eq!(result, Ok(false));
    }
}

/// Cancellation inside the model's real passes.
#[cfg(test)]
mod model_tests {
    use burn::optim::GradientsParams;
    use burn::tensor::Tensor;

    use super::*;
    use crate::DefaultAutodiffBackend;
    use crate::albert::AlbertForPreTraining;
    use crate::albert::tests::{tiny, tiny_batch};
    use crate::grads::GradLayout;

    type AB = DefaultAutodiffBackend;

    /// The flat gradient of a scalar of the tiny model's outputs; `cancel_before` sets `flag`
    /// just before that pass (forward or backward), inside the cancellable run.
    fn gradient(flag: &CancelFlag, cancel_before: Option<&str>) -> Result<Vec<f32>, Cancelled> {
        // No dropout: the passes are then bit-reproducible.
        let config = crate::config::AlbertConfig {
            classifier_dropout_prob: 0.0,
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            ..tiny()
        };
        let device = Default::default();
        let model = AlbertForPreTraining::<AB>::init(&config, 3, &device).expect("init");
        let input = tiny_batch().to_device::<AB>(&config, &device).expect("batch").input;
        let layout = GradLayout::from_module(&model).expect("layout");
        run_cancellable(flag, || {
            if cancel_before == Some("forward") {
                flag.cancel();
            }
            let out = model.forward(&input);
            let loss: Tensor<AB, 1> = out.prediction_logits.sum() + out.sop_logits.sum();
            if cancel_before == Some("backward") {
                flag.cancel();
            }
            let mut grads = GradientsParams::from_grads(loss.backward(), &model);
            let mut flat = vec![0.0; layout.len()];
            layout.flatten_into::<burn::backend::Flex>(&mut grads, &mut flat).expect("flatten");
            flat
        })
    }

    #[test]
    fn forward_and_backward_stop_at_a_fused_op_and_leave_nothing_behind() {
        let reference = gradient(&CancelFlag::new(), None).expect("not cancelled");
        for pass in ["forward", "backward"] {
            for _ in 0..20 {
                assert_eq!(gradient(&CancelFlag::new(), Some(pass)), Err(Cancelled), "{pass}");
            }
        }
        // Passes after cancelled ones compute the very same bits.
        let again = gradient(&CancelFlag::new(), None).expect("not cancelled");
        assert!(reference.iter().zip(&again).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}
