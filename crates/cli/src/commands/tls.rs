//! TLS material from the command line's `--tls-*` flags.

use crate::args::{ClientAuthArg, TlsArgs};

/// The TLS material the flags name, if any. A server (`serve`: coordinator, worker) needs its own
/// certificate and key; a client (`status`) needs them only for servers that require client
/// certificates (the handshake fails otherwise). `--tls-client-auth` is the servers' setting.
pub(crate) fn load_tls(
    args: &TlsArgs,
    serve: bool,
) -> anyhow::Result<Option<albatross_proto::tls::Tls>> {
    use albatross_proto::tls::{ClientAuth, Tls, TlsFiles};

    let client_auth = match args.tls_client_auth {
        ClientAuthArg::Required => ClientAuth::Required,
        ClientAuthArg::None => ClientAuth::None,
    };
    let identity = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
        (None, None) => None,
        _ => anyhow::bail!("--tls-cert and --tls-key go together"),
    };
    let Some(ca) = &args.tls_ca else {
        if identity.is_some() {
            anyhow::bail!("--tls-cert and --tls-key need --tls-ca");
        }
        return Ok(None);
    };
    if identity.is_none() && serve {
        anyhow::bail!(
            "serving over TLS needs --tls-cert and --tls-key besides --tls-ca (only a client \
             of servers run with --tls-client-auth none can do with the CA alone)"
        );
    }
    Ok(Some(Tls::load(&TlsFiles { ca: ca.clone(), identity, client_auth })?))
}
