//! The join token: when configured, every RPC must carry `authorization: Bearer <token>`.
//! Tokens are compared in constant time (over their SHA-256, so the length leaks nothing either).

use std::path::Path;

use albatross_proto::domain::Sha256Digest;
use tonic::{Request, Status};

use crate::error::CoordinatorError;

/// A tonic interceptor that checks the bearer token, or lets everything through without one.
#[derive(Clone)]
pub struct TokenCheck {
    expected: Option<Sha256Digest>,
}

impl std::fmt::Debug for TokenCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCheck").field("enabled", &self.expected.is_some()).finish()
    }
}

impl TokenCheck {
    pub fn new(token: Option<&str>) -> Self {
        Self { expected: token.map(Sha256Digest::of) }
    }

    /// # Errors
    /// `UNAUTHENTICATED` naming what is missing or wrong (never the token itself).
    pub fn check<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let Some(expected) = &self.expected else { return Ok(()) };
        let header = request.metadata().get("authorization").ok_or_else(|| {
            Status::unauthenticated("missing authorization metadata: expected Bearer <token>")
        })?;
        let token =
            header.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).ok_or_else(|| {
                Status::unauthenticated("authorization metadata is not of the form Bearer <token>")
            })?;
        let given = Sha256Digest::of(token.trim());
        let diff = given.0.iter().zip(expected.0.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff == 0 { Ok(()) } else { Err(Status::unauthenticated("the join token is wrong")) }
    }
}

impl tonic::service::Interceptor for TokenCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        self.check(&request)?;
        Ok(request)
    }
}

/// Read a token file: its content with surrounding whitespace removed.
///
/// # Errors
/// [`CoordinatorError::Io`] when it cannot be read, [`CoordinatorError::Config`] when empty.
pub fn read_token_file(path: &Path) -> Result<String, CoordinatorError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| CoordinatorError::Io { path: path.to_owned(), source })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(CoordinatorError::Config(format!("token file {} is empty", path.display())));
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(value: &str) -> Request<()> {
        let mut r = Request::new(());
        r.metadata_mut().insert("authorization", value.parse().expect("ascii"));
        r
    }

    #[test]
    fn bearer_token_is_required_when_configured() {
        let check = TokenCheck::new(Some("s3cret"));
        assert!(check.check(&with_auth("Bearer s3cret")).is_ok());
        let wrong = check.check(&with_auth("Bearer s3cre")).expect_err("wrong");
        assert_eq!(
            (wrong.code(), wrong.message()),
            (tonic::Code::Unauthenticated, "the join token is wrong")
        );
        let basic = check.check(&with_auth("Basic s3cret")).expect_err("scheme");
        assert_eq!(basic.code(), tonic::Code::Unauthenticated);
        let missing = check.check(&Request::new(())).expect_err("missing");
        assert!(missing.message().starts_with("missing authorization"));
        assert!(TokenCheck::new(None).check(&Request::new(())).is_ok());
    }

    #[test]
    fn token_files_are_trimmed_and_must_not_be_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "abc\n").expect("write");
        assert_eq!(read_token_file(&path).expect("read"), "abc");
        std::fs::write(&path, " \n").expect("write");
        assert!(matches!(read_token_file(&path), Err(CoordinatorError::Config(_))));
    }
}
