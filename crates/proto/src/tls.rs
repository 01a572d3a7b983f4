//! TLS for every gRPC connection of a job: the coordinator's service, workers' calls to it, and
//! the worker-to-worker data plane. One private CA signs every server's certificate and clients
//! trust only that CA. By default TLS is mutual: servers also require a client certificate from
//! the CA, so a process without the job's credentials can neither join nor inject gradient
//! pieces. With [`ClientAuth::None`] servers accept clients without a certificate (encryption and
//! server authentication only; the join token, when set, is then what keeps strangers out), and a
//! client such as `albatross status` needs nothing but the CA.
//!
//! A server's certificate must name the host others dial it by (`--advertise` for workers,
//! the coordinator URL's host for the coordinator) as a DNS or IP subject alternative name.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// Whether servers require clients to present a certificate from the CA (`--tls-client-auth`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// Mutual TLS.
    #[default]
    Required,
    /// Server-only TLS.
    None,
}

/// Where a process's TLS material lives (`--tls-ca`, `--tls-cert`, `--tls-key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate of the job's CA (trusted for servers, and for clients under mutual TLS).
    pub ca: PathBuf,
    /// PEM certificate (chain) and private key of this process: needed to serve, and to call a
    /// server that requires client certificates.
    pub identity: Option<(PathBuf, PathBuf)>,
    pub client_auth: ClientAuth,
}

/// Loaded TLS material, cheap to clone.
#[derive(Clone, PartialEq, Eq)]
pub struct Tls {
    ca: Vec<u8>,
    /// Certificate and key PEM.
    identity: Option<(Vec<u8>, Vec<u8>)>,
    client_auth: ClientAuth,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Tls")
            .field("ca_bytes", &self.ca.len())
            .field("has_identity", &self.identity.is_some())
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

/// TLS material that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("TLS {what} {}: {reason}", path.display())]
pub struct TlsError {
    pub what: &'static str,
    pub path: PathBuf,
    pub reason: String,
}

fn read_pem(what: &'static str, path: &Path, marker: &str) -> Result<Vec<u8>, TlsError> {
    let error = |reason: String| TlsError { what, path: path.to_path_buf(), reason };
    let bytes = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    let text = String::from_utf8_lossy(&bytes);
    if !text.contains("-----BEGIN") || !text.contains(marker) {
        return Err(error(format!("is not PEM holding a {marker}")));
    }
    Ok(bytes)
}

impl Tls {
    /// Reads and sanity-checks the PEM files (the handshake checks the rest).
    ///
    /// # Errors
    /// A missing or unreadable file, or one that is not the PEM it should be.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let ca = read_pem("CA certificate", &files.ca, "CERTIFICATE")?;
        let identity = match &files.identity {
            Some((cert, key)) => Some((
                read_pem("certificate", cert, "CERTIFICATE")?,
                read_pem("private key", key, "PRIVATE KEY")?,
            )),
            None => None,
        };
        Ok(Self { ca, identity, client_auth: files.client_auth })
    }

    fn identity(&self) -> Option<Identity> {
        self.identity.as_ref().map(|(cert, key)| Identity::from_pem(cert, key))
    }

    /// Server side: present our certificate; under mutual TLS require a client certificate
    /// from the CA. Material loaded without a certificate (a client's) makes the server fail to
    /// start with tonic's error: callers that serve insist on a certificate when loading.
    pub fn server(&self) -> ServerTlsConfig {
        let config = match self.identity() {
            Some(identity) => ServerTlsConfig::new().identity(identity),
            None => ServerTlsConfig::new(),
        };
        match self.client_auth {
            ClientAuth::Required => config.client_ca_root(Certificate::from_pem(&self.ca)),
            ClientAuth::None => config,
        }
    }

    /// Client side towards `host`: trust only the CA; present our certificate if we have one.
    pub fn client(&self, host: &str) -> ClientTlsConfig {
        let config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .domain_name(host);
        match self.identity() {
            Some(identity) => config.identity(identity),
            None => config,
        }
    }
}

/// The host part of `host:port`, `[v6]:port` or a URL (`https://host:port/...`).
pub fn host_of(address: &str) -> &str {
    let rest = address.split_once("://").map_or(address, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    authority.rsplit_once(':').map_or(authority, |(host, _)| host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_cut_from_addresses_and_urls() {
        assert_eq!(host_of("worker-1.albatross-workers:7071"), "worker-1.albatross-workers");
        assert_eq!(host_of("https://127.0.0.1:7070"), "127.0.0.1");
        assert_eq!(host_of("http://coord:7070/x"), "coord");
        assert_eq!(host_of("[::1]:7071"), "::1");
        assert_eq!(host_of("localhost"), "localhost");
    }

    #[test]
    fn files_that_are_not_the_right_pem_are_named() {
        let dir = std::env::temp_dir().join(format!("albatross-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let cert = dir.join("cert.pem");
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            .expect("write");
        let not_key = dir.join("key.pem");
        std::fs::write(&not_key, "hello").expect("write");
        let files = TlsFiles {
            ca: cert.clone(),
            identity: Some((cert.clone(), not_key.clone())),
            client_auth: ClientAuth::Required,
        };
        let err = Tls::load(&files).expect_err("not a key");
        assert!(err.to_string().contains("private key") && err.to_string().contains("key.pem"));
        let missing = TlsFiles {
            ca: dir.join("nope.pem"),
            identity: Some((cert, not_key)),
            client_auth: ClientAuth::None,
        };
        assert!(Tls::load(&missing).expect_err("missing").to_string().contains("CA certificate"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
