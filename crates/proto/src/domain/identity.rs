use std::fmt;

/// A worker's stable name. On Kubernetes it is the pod name, so it follows the DNS label rules:
/// 1–63 characters of `a-z`, `0-9` and `-`, starting and ending with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkerId(String);

/// A worker id that breaks the DNS label rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid worker id {id:?}: {reason}")]
pub struct InvalidWorkerId {
    pub id: String,
    pub reason: &'static str,
}

impl WorkerId {
    pub const MAX_LEN: usize = 63;

    /// # Errors
    /// When `id` is empty, too long, or not a lowercase DNS label.
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidWorkerId> {
        let id = id.into();
        let reason = if id.is_empty() {
            Some("must not be empty")
        } else if id.len() > Self::MAX_LEN {
            Some("must be at most 63 characters")
        } else if !id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            Some("may contain only a-z, 0-9 and '-'")
        } else if id.starts_with('-') || id.ends_with('-') {
            Some("must start and end with a letter or digit")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(InvalidWorkerId { id, reason }),
            None => Ok(Self(id)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One worker process: its id plus the incarnation it chose at start-up (larger on every
/// restart, e.g. start time in milliseconds), so a restarted pod replaces its old self.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkerRef {
    pub id: WorkerId,
    pub incarnation: u64,
}

impl fmt::Display for WorkerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.id, self.incarnation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        for id in ["w", "worker-0", "albatross-worker-12", &"a".repeat(63)] {
            assert_eq!(WorkerId::new(id).map(|w| w.to_string()), Ok(id.to_string()));
        }
    }

    #[test]
    fn rejects_each_rule_with_its_reason() {
        let cases = [
            ("", "must not be empty"),
            (&*"a".repeat(64), "must be at most 63 characters"),
            ("Worker-0", "may contain only a-z, 0-9 and '-'"),
            ("w_0", "may contain only a-z, 0-9 and '-'"),
            ("-w", "must start and end with a letter or digit"),
            ("w-", "must start and end with a letter or digit"),
        ];
        for (id, reason) in cases {
            let err = WorkerId::new(id).expect_err(id);
            assert_eq!(err.reason, reason, "{id:?}");
            assert!(err.to_string().contains(&format!("{id:?}")));
        }
    }
}
