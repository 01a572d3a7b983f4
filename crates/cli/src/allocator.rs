//! glibc malloc settings for the processes `albatross` starts (workers, the coordinator,
//! benchmark ranks); the container image sets the same through its environment.
//!
//! With glibc's defaults a large block is mmapped on allocation and unmapped on free until the
//! adaptive threshold has grown past it, and free memory at the top of the heap is returned to
//! the kernel almost at once. A training step allocates and frees the same multi-MiB tensors every
//! step and an all-reduce the same 1 MiB pieces every operation, so each one was faulted in and
//! zeroed afresh: page faults and `clear_page` took ~10 % of a 4-rank all-reduce's CPU. Blocks up to
//! 32 MiB now come from the heap and are reused, and up to 256 MiB of free heap stays mapped between
//! steps. Measured on the 2-core machine (same session, alternating runs): albert-base with two
//! workers 253 → 271 and 242 → 251 tokens/s. The cost is resident memory kept at its peak
//! instead of shrinking between steps, which is where it goes back to on the next step anyway.
//!
//! A user's own `GLIBC_TUNABLES` wins: it is passed on untouched. Other C libraries ignore it.

use std::process::Command;

/// The variable glibc reads its tunables from, once, at process start.
const VARIABLE: &str = "GLIBC_TUNABLES";

/// What `albatross` sets it to (keep in step with `deploy/docker/Dockerfile`).
pub const TUNABLES: &str =
    "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=268435456";

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
}
