//! Why a server refused a call, in a form a client reads without parsing the message: a code in
//! the `albatross-refusal` response metadata of the `tonic::Status`. The status code says what
//! kind of failure it is; the refusal, where one is set, says which one, so that a client steers
//! by it (a worker whose newer incarnation has joined stops instead of retrying).
//!
//! The message stays for people. Servers that predate a refusal send none; clients must treat
//! a missing or unknown code as "no refusal named".

use tonic::Status;
use tonic::metadata::MetadataValue;

/// The response metadata key that carries the refusal code.
pub const KEY: &str = "albatross-refusal";

/// A refusal a client acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The call came from an older incarnation of a worker whose newer process has joined
    /// (`FAILED_PRECONDITION`): the old process must stop, never rejoin.
    StaleIncarnation,
}

impl Refusal {
    const ALL: [Self; 1] = [Self::StaleIncarnation];

    /// The code on the wire.
    pub fn code(self) -> &'static str {
        match self {
            Self::StaleIncarnation => "stale-incarnation",
        }
    }

    /// The refusal a wire code names; `None` for an unknown one.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }

    /// `status` with this refusal attached.
    pub fn attach(self, mut status: Status) -> Status {
        status.metadata_mut().insert(KEY, MetadataValue::from_static(self.code()));
        status
    }

    /// The refusal `status` names, if any.
    pub fn of(status: &Status) -> Option<Self> {
        status.metadata().get(KEY)?.to_str().ok().and_then(Self::from_code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_survives_the_status_and_unknown_or_missing_codes_name_none() {
        let status = Refusal::StaleIncarnation.attach(Status::failed_precondition("stale"));
        assert_eq!(Refusal::of(&status), Some(Refusal::StaleIncarnation));
        assert_eq!(status.message(), "stale");
        assert_eq!(Refusal::of(&Status::failed_precondition("worker is stale")), None);
        let mut other = Status::failed_precondition("x");
        other.metadata_mut().insert(KEY, MetadataValue::from_static("from-the-future"));
        assert_eq!(Refusal::of(&other), None);
        for refusal in Refusal::ALL {
            assert_eq!(Refusal::from_code(refusal.code()), Some(refusal));
        }
    }
}
