//! The rustls certificate verifier for DANE SMTP (RFC 7672 3, RFC 7671 5): the server's chain
//! is authenticated by the validated TLSA records of its host, not by WebPKI roots.
//!
//! * DANE-EE(3): the leaf (its certificate or SubjectPublicKeyInfo) matches a record. Nothing
//!   else is checked: no name, no validity dates, no issuer (RFC 7672 3.1.1, RFC 7671 5.1).
//! * DANE-TA(2): a certificate of the presented chain matches a record (the server must send
//!   the trust anchor, RFC 7672 3.1.2). That certificate becomes the only trust anchor of a
//!   WebPKI path validation (rustls' `WebPkiServerVerifier`, i.e. rustls-webpki): signatures
//!   up the chain, validity dates, basic constraints and name constraints of the certificates
//!   below the anchor, the serverAuth EKU if the leaf lists EKUs, and the leaf's name against
//!   the reference identifiers (RFC 7672 3.2.2: the TLSA base domain, the MX host name, the
//!   expanded name of a secure CNAME chain; a wildcard in the leftmost label matches). The
//!   anchor's own dates are not checked (RFC 5280 6.1.1: a trust anchor is not a certificate
//!   of the path). No revocation checks.
//! * PKIX-TA(0) and PKIX-EE(1) records are unusable for SMTP (RFC 7672 3.1.3) and ignored.
//!
//! The handshake signatures (CertificateVerify, ServerKeyExchange) are checked as always, with
//! the provider's algorithms ([`hato_tls::verify::ServerVerifier`]), so the server must hold the
//! key of the matched certificate.
//!
//! The server name rustls passes in is not used: the reference identifiers come from DNSSEC
//! ([`crate::dane_lookup::DaneHost::names`]).

use std::sync::{Arc, Mutex};

use hato_tls::verify::{ChainCheck, PresentedChain, ServerVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, OtherError, RootCertStore};

use crate::dane::{DaneMatch, Tlsa, match_all};

/// The record that authenticated a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaneVerified {
    pub record: Tlsa,
    /// Position in the presented chain of the certificate the record matched (0: the leaf).
    pub depth: usize,
    /// For DANE-TA(2): the reference identifier the leaf matched.
    pub name: Option<String>,
}

impl DaneVerified {
    /// For logs and [`crate::tls_policy::TlsFacts::dane`], e.g. `DANE-EE(3) SPKI(1) SHA2-256(1)`.
    pub fn describe(&self) -> String {
        self.record.describe()
    }
}

impl std::fmt::Display for DaneVerified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// No TLSA record authenticated the chain.
#[derive(Debug, thiserror::Error)]
#[error("DANE: {0}")]
pub struct DaneFailure(pub String);

/// A rustls certificate verifier (a [`ChainCheck`]; [`DaneVerifier::client_config`] installs it)
/// that authenticates the server by its TLSA records. Create one per connection: it remembers the match of its last handshake ([`DaneVerifier::matched`]).
pub struct DaneVerifier {
    records: Vec<Tlsa>,
    names: Vec<String>,
    provider: Arc<CryptoProvider>,
    matched: Mutex<Option<DaneVerified>>,
}

impl std::fmt::Debug for DaneVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaneVerifier")
            .field("records", &self.records)
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl DaneVerifier {
    /// A verifier for these (validated) TLSA records; `names` are the reference identifiers for
    /// DANE-TA(2) (lower case, no trailing dot). Uses the ring provider.
    pub fn new(records: Vec<Tlsa>, names: Vec<String>) -> DaneVerifier {
        DaneVerifier::with_provider(
            records,
            names,
            Arc::new(rustls::crypto::ring::default_provider()),
        )
    }

    pub fn with_provider(
        records: Vec<Tlsa>,
        names: Vec<String>,
        provider: Arc<CryptoProvider>,
    ) -> DaneVerifier {
        let names = names
            .into_iter()
            .map(|n| n.trim().trim_end_matches('.').to_ascii_lowercase())
            .collect();
        DaneVerifier {
            records,
            names,
            provider,
            matched: Mutex::new(None),
        }
    }

    /// The record that authenticated the server in the last successful handshake.
    pub fn matched(&self) -> Option<DaneVerified> {
        self.matched.lock().map(|m| m.clone()).unwrap_or(None)
    }

    /// A rustls client configuration using this verifier (ring, TLS 1.2 and 1.3, no client
    /// certificate, no session resumption: a resumed session would skip the verifier).
    pub fn client_config(self: &Arc<Self>) -> Result<rustls::ClientConfig, rustls::Error> {
        let mut config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ServerVerifier::new(
                self.clone(),
                &self.provider,
            )))
            .with_no_client_auth();
        config.resumption = rustls::client::Resumption::disabled();
        Ok(config)
    }

    /// Authenticates a presented chain (leaf, then what the server sent after it) at `now`.
    pub fn verify_chain(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<DaneVerified, rustls::Error> {
        let mut chain: Vec<&[u8]> = Vec::with_capacity(1 + intermediates.len());
        chain.push(end_entity.as_ref());
        chain.extend(intermediates.iter().map(|c| c.as_ref()));
        let matches = match_all(&self.records, &chain)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let mut last_error = None;
        for m in matches {
            match m {
                DaneMatch::EndEntity { record } => {
                    return Ok(DaneVerified {
                        record: self.records[record].clone(),
                        depth: 0,
                        name: None,
                    });
                }
                DaneMatch::TrustAnchor {
                    record,
                    chain_index,
                } => match self.verify_to_anchor(end_entity, intermediates, chain_index, now) {
                    Ok(name) => {
                        return Ok(DaneVerified {
                            record: self.records[record].clone(),
                            depth: chain_index,
                            name: Some(name),
                        });
                    }
                    Err(e) => last_error = Some(e),
                },
            }
        }
        Err(last_error.unwrap_or_else(|| {
            failure(format!(
                "no TLSA record matched the certificate chain ({} certificates, {} usable records)",
                chain.len(),
                self.records.iter().filter(|r| r.is_usable()).count()
            ))
        }))
    }

    /// DANE-TA(2): the chain from the leaf up to `chain[anchor]` validates with that certificate
    /// as the only trust anchor, and the leaf carries one of the names. Returns the name.
    fn verify_to_anchor(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        anchor: usize,
        now: UnixTime,
    ) -> Result<String, rustls::Error> {
        let anchor_der = match anchor {
            0 => end_entity,
            n => &intermediates[n - 1],
        };
        let mut roots = RootCertStore::empty();
        roots.add(anchor_der.clone().into_owned())?;
        let webpki =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| failure(format!("trust anchor not usable: {e}")))?;
        // The certificates between the leaf and the anchor; anything above it is ignored.
        let below = &intermediates[..anchor.saturating_sub(1)];
        let mut last_error = None;
        for name in &self.names {
            let Ok(server_name) = ServerName::try_from(name.as_str()) else {
                continue;
            };
            match webpki.verify_server_cert(end_entity, below, &server_name, &[], now) {
                Ok(_) => return Ok(name.clone()),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| failure("no reference identifier for DANE-TA".into())))
    }
}

fn failure(message: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(DaneFailure(
        message,
    )))))
}

/// The chain decision of the verifier [`DaneVerifier::client_config`] installs; the server name
/// rustls passes in and a stapled OCSP response are not used.
impl ChainCheck for DaneVerifier {
    fn check_chain(&self, chain: PresentedChain<'_>) -> Result<(), rustls::Error> {
        let verified = self.verify_chain(chain.end_entity, chain.intermediates, chain.now)?;
        if let Ok(mut matched) = self.matched.lock() {
            *matched = Some(verified);
        }
        Ok(())
    }
}
