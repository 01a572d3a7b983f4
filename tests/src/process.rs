//! Running the `albatross` program as a child process.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::Context;

/// The `albatross` program under test.
#[derive(Debug, Clone)]
pub struct Albatross {
    path: PathBuf,
}

/// What a finished run printed and how it ended.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Albatross {
    /// `path` is the binary, normally `env!("CARGO_BIN_EXE_albatross-it")`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// A command for the program with `args`, logs quiet unless RUST_LOG says otherwise.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = Command::new(&self.path);
        cmd.args(args);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        cmd
    }

    /// Run to completion with `stdin` fed to the program.
    ///
    /// # Errors
    /// When the program cannot be started or its pipes fail.
    pub fn run<I, S>(&self, args: I, stdin: &str) -> anyhow::Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", self.path.display()))?;
        let mut pipe = child.stdin.take().context("invariant: stdin is piped")?;
        match pipe.write_all(stdin.as_bytes()) {
            // A program that exits without reading its input is not an error here.
            Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
                return Err(err).context("cannot write the program's stdin");
            }
            _ => drop(pipe),
        }
        let out = child.wait_with_output().context("cannot wait for the program")?;
        Ok(Output {
            success: out.status.success(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}
