//! The files of one run directory (`--out`): what the launcher, the coordinator and the
//! workers write where.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The files of one run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// The run directory at `root`, made absolute (every process resolves it alike).
    pub fn at(root: &Path) -> anyhow::Result<Self> {
        Ok(Self { root: absolute(root)? })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The log of one process (`coordinator`, `worker-0`, …).
    pub fn log(&self, name: &str) -> PathBuf {
        self.root.join("logs").join(format!("{name}.log"))
    }

    /// The report a worker writes when it exits.
    pub fn report(&self, worker: &str) -> PathBuf {
        self.root.join("workers").join(format!("{worker}.json"))
    }
}

pub(crate) fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
}
