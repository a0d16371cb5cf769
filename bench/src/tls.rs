//! TLS client configuration for the load generator (rustls with the ring provider only).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use hato_tls::verify::{ChainCheck, PresentedChain, ServerVerifier};
use rustls::client::Resumption;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;

/// The TLS client options of both load generators.
#[derive(clap::Args, Debug)]
pub struct TlsArgs {
    /// Accept any server certificate (for self-signed test servers on this machine).
    #[arg(long)]
    pub insecure: bool,

    /// PEM file with the CA certificates to trust (default: the system bundle).
    #[arg(long, value_name = "PEM", conflicts_with = "insecure")]
    pub ca_file: Option<PathBuf>,

    /// Name expected in the server certificate and sent as SNI (default: host of --server).
    #[arg(long, value_name = "NAME")]
    pub tls_name: Option<String>,

    /// Allow TLS session resumption (off by default: every connection pays a full handshake).
    #[arg(long)]
    pub tls_resume: bool,
}

impl TlsArgs {
    /// The connector shared by every connection of a run to `server` (host:port), and the name
    /// expected in its certificate.
    pub fn connector(&self, server: &str) -> anyhow::Result<(TlsConnector, ServerName<'static>)> {
        let config = client_config(self.insecure, self.ca_file.as_deref(), self.tls_resume)?;
        let name = match &self.tls_name {
            Some(n) => n.clone(),
            None => host_of(server).to_owned(),
        };
        Ok((TlsConnector::from(config), server_name(&name)?))
    }
}

/// The host part of host:port, without IPv6 brackets.
fn host_of(server: &str) -> &str {
    let host = match server.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => server,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Trust anchors used when neither `--insecure` nor `--ca-file` is given.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Builds the client configuration shared by every connection of a run.
///
/// `insecure` accepts any server certificate (see [`AcceptAnyCert`]); otherwise the
/// certificates in `ca_file` (or the system bundle) are the trust anchors.
/// Session resumption is off unless `resume` is set, so that every connection pays for
/// a full handshake on both servers being compared.
fn client_config(
    insecure: bool,
    ca_file: Option<&Path>,
    resume: bool,
) -> anyhow::Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("building the rustls client configuration")?;
    let mut config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ServerVerifier::new(
                AcceptAnyCert,
                &provider,
            )))
            .with_no_client_auth()
    } else {
        let path = match ca_file {
            Some(p) => p,
            None if Path::new(SYSTEM_CA_BUNDLE).exists() => Path::new(SYSTEM_CA_BUNDLE),
            None => bail!(
                "no trust anchors: pass --ca-file PEM, or --insecure for a self-signed server"
            ),
        };
        let mut roots = RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(path)
            .with_context(|| format!("reading CA certificates from {}", path.display()))?
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("parsing CA certificates in {}", path.display()))?;
        let (added, _ignored) = roots.add_parsable_certificates(certs);
        if added == 0 {
            bail!("no usable CA certificate in {}", path.display());
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    if !resume {
        config.resumption = Resumption::disabled();
    }
    Ok(Arc::new(config))
}

/// Parses the name the client expects in the server certificate (also sent as SNI).
fn server_name(name: &str) -> anyhow::Result<ServerName<'static>> {
    let name = name.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(name.to_owned())
        .map_err(|e| anyhow::anyhow!("invalid TLS server name {name:?}: {e}"))
}

/// A certificate verifier that accepts every server certificate.
///
/// This is fine for a benchmark and nowhere else: the tool only talks to a server on
/// this machine that the operator started (hato's development certificate and the
/// comparison Postfix instance are both self-signed), nothing secret crosses the
/// connection, and what is being measured is the cost of the TLS handshake and of
/// encryption, not the trust decision. The handshake signature is still verified
/// properly, so the client does the same cryptographic work as a real client and a
/// broken server-side signature still fails the run ([`ServerVerifier`]).
#[derive(Debug)]
struct AcceptAnyCert;

impl ChainCheck for AcceptAnyCert {
    fn check_chain(&self, _chain: PresentedChain<'_>) -> Result<(), rustls::Error> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(host_of("127.0.0.1:25"), "127.0.0.1");
        assert_eq!(host_of("[::1]:25"), "::1");
        assert_eq!(host_of("mail.example"), "mail.example");
    }
}
