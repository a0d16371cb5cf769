//! The client side: a rustls [`ServerCertVerifier`] made of a decision on the server's
//! certificate chain ([`ChainCheck`]: DANE, opportunistic TLS, a benchmark accepting anything)
//! and the handshake-signature checks every such verifier needs alike ([`ServerVerifier`]).

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// What the server presented, as rustls hands it to [`ServerCertVerifier::verify_server_cert`].
#[derive(Debug, Clone, Copy)]
pub struct PresentedChain<'a> {
    /// The leaf certificate.
    pub end_entity: &'a CertificateDer<'a>,
    /// What the server sent after the leaf.
    pub intermediates: &'a [CertificateDer<'a>],
    /// The name the client expects (also sent as SNI).
    pub server_name: &'a ServerName<'a>,
    /// A stapled OCSP response, empty if none.
    pub ocsp_response: &'a [u8],
    pub now: UnixTime,
}

/// The decision on a server's certificate chain: `Ok` trusts it. The handshake signatures are
/// not its business: [`ServerVerifier`] checks them.
pub trait ChainCheck: fmt::Debug + Send + Sync {
    fn check_chain(&self, chain: PresentedChain<'_>) -> Result<(), rustls::Error>;
}

impl<C: ChainCheck + ?Sized> ChainCheck for Arc<C> {
    fn check_chain(&self, chain: PresentedChain<'_>) -> Result<(), rustls::Error> {
        (**self).check_chain(chain)
    }
}

/// A rustls [`ServerCertVerifier`]: `C` decides on the chain, and the handshake signatures (TLS
/// 1.2 ServerKeyExchange, TLS 1.3 CertificateVerify) are always verified with the provider's
/// algorithms (`rustls::crypto::verify_tls12_signature` and `verify_tls13_signature`, as rustls'
/// own WebPKI verifier does), so the server must hold the key of the certificate it presented.
/// Derefs to `C`.
#[derive(Debug)]
pub struct ServerVerifier<C> {
    check: C,
    algorithms: WebPkiSupportedAlgorithms,
}

impl<C: ChainCheck> ServerVerifier<C> {
    /// `check` with the signature algorithms of `provider`.
    pub fn new(check: C, provider: &CryptoProvider) -> ServerVerifier<C> {
        ServerVerifier {
            check,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl<C> Deref for ServerVerifier<C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.check
    }
}

impl<C: ChainCheck> ServerCertVerifier for ServerVerifier<C> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check.check_chain(PresentedChain {
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        })?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use rustls::{ClientConnection, Connection, ServerConnection};
    use rustls_pki_types::PrivateKeyDer;

    use super::*;

    /// Accepts or refuses every chain, and remembers the leaf and name it was shown.
    #[derive(Debug)]
    struct Fixed {
        accept: bool,
        seen: Mutex<Option<(Vec<u8>, String)>>,
    }

    impl ChainCheck for Fixed {
        fn check_chain(&self, chain: PresentedChain<'_>) -> Result<(), rustls::Error> {
            *self.seen.lock().unwrap() = Some((
                chain.end_entity.to_vec(),
                chain.server_name.to_str().into_owned(),
            ));
            if self.accept {
                Ok(())
            } else {
                Err(rustls::Error::General("refused".into()))
            }
        }
    }

    /// A handshake in memory between a self-signed server for `localhost` and a client using
    /// `verifier`; the server's certificate, and the client's error if any.
    fn handshake(verifier: Arc<ServerVerifier<Fixed>>) -> (Vec<u8>, Result<(), rustls::Error>) {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert = generated.cert.der().clone();
        let key = PrivateKeyDer::try_from(generated.signing_key.serialize_der()).unwrap();
        let server_config = rustls::ServerConfig::builder_with_provider(crate::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let client_config = rustls::ClientConfig::builder_with_provider(crate::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        let name = ServerName::try_from("localhost").unwrap();
        let mut client: Connection = ClientConnection::new(Arc::new(client_config), name)
            .unwrap()
            .into();
        let mut server: Connection = ServerConnection::new(Arc::new(server_config))
            .unwrap()
            .into();
        (cert.to_vec(), run(&mut client, &mut server))
    }

    /// Drives the handshake until both sides are done; the client's error if any.
    fn run(client: &mut Connection, server: &mut Connection) -> Result<(), rustls::Error> {
        while client.is_handshaking() || server.is_handshaking() {
            let sent = transfer(client, server).expect("the server accepts what the client sends");
            let received = transfer(server, client)?;
            assert!(sent || received, "the handshake is stuck");
        }
        Ok(())
    }

    /// Moves what `from` has to send to `to`, which processes it; whether anything moved.
    fn transfer(from: &mut Connection, to: &mut Connection) -> Result<bool, rustls::Error> {
        let mut bytes = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut bytes).unwrap();
        }
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            to.read_tls(&mut rest).unwrap();
            to.process_new_packets()?;
        }
        Ok(!bytes.is_empty())
    }

    fn verifier(accept: bool) -> Arc<ServerVerifier<Fixed>> {
        let check = Fixed {
            accept,
            seen: Mutex::new(None),
        };
        Arc::new(ServerVerifier::new(check, &crate::provider()))
    }

    #[test]
    fn the_check_decides_and_sees_what_the_server_presented() {
        let accepting = verifier(true);
        let (cert, result) = handshake(accepting.clone());
        result.unwrap();
        let seen = accepting.seen.lock().unwrap().clone();
        assert_eq!(seen, Some((cert, "localhost".to_owned())));

        let refusing = verifier(false);
        let (_, result) = handshake(refusing.clone());
        assert_eq!(result, Err(rustls::Error::General("refused".into())));
        assert!(refusing.seen.lock().unwrap().is_some());
    }

    #[test]
    fn signature_schemes_are_the_providers() {
        assert_eq!(
            verifier(true).supported_verify_schemes(),
            crate::provider()
                .signature_verification_algorithms
                .supported_schemes()
        );
    }
}
