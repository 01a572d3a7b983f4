//! glibc malloc settings for the processes `albatross` starts (workers, the coordinator,
//! benchmark ranks); the container image sets the same through its environment.
//!
//! With glibc's defaults a large block is mmapped on allocation and unmapped on free until the
//! adaptive threshold has grown past it, and free memory at the top of the heap is returned to
//! the kernel almost at once. A training step allocates and frees the same multi-MiB tensors every
//! step and an all-reduce the same 1 MiB pieces every operation, so each one was faulted in and
//! zeroed afresh: page faults and `clear_page` took ~10 % of a 4-rank all-reduce's CPU. Blocks up to
//! 32 MiB (glibc's ceiling for the threshold) now come from the heap and are reused. Measured on
//! the 2-core machine (same session, alternating runs): albert-base with two workers 253 → 271
//! and 242 → 251 tokens/s.
//!
//! A worker runs its steps on whichever blocking-pool thread tokio hands it, and glibc gives each
//! thread its own arena, built of 64 MiB sub-heaps that are unmapped as soon as they empty: a step's
//! activations (hundreds of MiB on albert-base) were faulted in again every step. One arena (the
//! main heap, grown with `brk`) and a trim threshold above any step's working set keep them
//! mapped: page faults per albert-base worker step fell from ~14 k to ~5 k (56 MiB → 21 MiB of
//! fresh pages; `perf stat -e page-faults` over `bench train`, 1 against 7 steps), and those at
//! start-up from ~780 k to ~460 k. The threads of a worker allocate little besides the step's
//! tensors, so one arena costs them no measurable contention. The cost is resident memory kept
//! at its peak instead of shrinking between steps, which is where it goes back to on the next
//! step anyway.
//!
//! A user's own `GLIBC_TUNABLES` wins: it is passed on untouched. Other C libraries ignore it.

use std::process::Command;

/// The variable glibc reads its tunables from, once, at process start.
const VARIABLE: &str = "GLIBC_TUNABLES";

/// What `albatross` sets it to (keep in step with `deploy/docker/Dockerfile`).
pub const TUNABLES: &str = "glibc.malloc.mmap_threshold=33554432:\
     glibc.malloc.trim_threshold=4294967296:glibc.malloc.arena_max=1";

/// Start `command` with the allocator settings unless this process's environment has its own.
pub fn tune(command: &mut Command) -> &mut Command {
    if std::env::var_os(VARIABLE).is_none() {
        command.env(VARIABLE, TUNABLES);
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_get_the_settings_unless_the_user_chose_their_own() {
        let mut command = Command::new("true");
        tune(&mut command);
        let set = command.get_envs().find(|(k, _)| *k == VARIABLE).and_then(|(_, v)| v);
        match std::env::var_os(VARIABLE) {
            None => assert_eq!(set, Some(std::ffi::OsStr::new(TUNABLES))),
            Some(_) => assert_eq!(set, None, "the inherited value is passed on untouched"),
        }
    }

    #[test]
    fn the_container_image_sets_the_same_tunables() {
        let dockerfile = include_str!("../../../deploy/docker/Dockerfile");
        assert!(
            dockerfile.contains(&format!("{VARIABLE}={TUNABLES}")),
            "deploy/docker/Dockerfile must set {VARIABLE}={TUNABLES}"
        );
    }
}
