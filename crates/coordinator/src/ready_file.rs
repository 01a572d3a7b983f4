//! `--ready-file FILE`: once the coordinator listens and its state is durable, it says where it
//! listens. Tests and launchers bind port 0 and must learn the port the kernel chose; a reader
//! polling for the file never sees it half-written (temp file in the same directory, then
//! rename).

use std::fs::{self, File};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::CoordinatorError;

/// The contents of the ready file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyInfo {
    /// The bound gRPC address, `IP:PORT`.
    pub grpc: SocketAddr,
    /// The bound status page and metrics address, if served.
    pub http: Option<SocketAddr>,
    /// The bound cleartext health-only address (`--health-listen`), if served.
    #[serde(default)]
    pub health: Option<SocketAddr>,
    pub pid: u32,
    /// The coordinator instance id (also in `JoinResponse` and `GetStatus`).
    pub instance: String,
}

/// Write `info` to `path` atomically, replacing any older file (a previous run's).
///
/// # Errors
/// [`CoordinatorError::Io`] naming the file that could not be written or renamed.
pub fn write_ready_file(path: &Path, info: &ReadyInfo) -> Result<(), CoordinatorError> {
    let io = |p: &Path, source| CoordinatorError::Io { path: p.to_owned(), source };
    let name = path.file_name().ok_or_else(|| {
        CoordinatorError::Config(format!("ready file {} has no file name", path.display()))
    })?;
    // The temp file must be on the same file system for the rename to be atomic.
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".tmp.{}", std::process::id()));
    let temp = path.with_file_name(temp_name);
    let text = serde_json::to_string(info)
        .map_err(|e| CoordinatorError::Config(format!("cannot encode the ready file: {e}")))?;
    let mut file = File::create(&temp).map_err(|e| io(&temp, e))?;
    file.write_all(format!("{text}\n").as_bytes()).map_err(|e| io(&temp, e))?;
    file.sync_all().map_err(|e| io(&temp, e))?;
    drop(file);
    fs::rename(&temp, path).map_err(|e| {
        // Leave no temp file behind; the rename error is what the caller needs to see.
        let _ = fs::remove_file(&temp);
        io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_file_is_replaced_whole_and_reads_back() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("ready.json");
        fs::write(&path, "stale from a previous run").expect("write");
        let info = ReadyInfo {
            grpc: "127.0.0.1:41000".parse().expect("addr"),
            http: None,
            health: Some("127.0.0.1:41002".parse().expect("addr")),
            pid: 42,
            instance: "42-abc".into(),
        };
        write_ready_file(&path, &info).expect("write");
        let text = fs::read_to_string(&path).expect("read");
        let value: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(
            value,
            serde_json::json!({
                "grpc": "127.0.0.1:41000", "http": null, "health": "127.0.0.1:41002",
                "pid": 42, "instance": "42-abc"
            })
        );
        assert_eq!(serde_json::from_str::<ReadyInfo>(&text).expect("typed"), info);
        // A ready file from before the health port existed still reads.
        let older = r#"{"grpc": "127.0.0.1:41000", "http": null, "pid": 42, "instance": "42-abc"}"#;
        assert_eq!(serde_json::from_str::<ReadyInfo>(older).expect("typed").health, None);
        let left: Vec<_> = fs::read_dir(tmp.path()).expect("list").collect();
        assert_eq!(left.len(), 1, "the temp file was renamed, not left behind");
        let err = write_ready_file(&tmp.path().join("no-dir").join("r.json"), &info)
            .expect_err("missing directory");
        assert!(matches!(err, CoordinatorError::Io { .. }), "{err}");
    }
}
