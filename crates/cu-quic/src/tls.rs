//! TLS 1.3 for QUIC with the node key as the certificate key (`docs/quic.md` §2).
//!
//! Each node presents a self-signed certificate for its ed25519 node key, the key `GET /` publishes and
//! SEV-SNP evidence binds; both sides present one (mutual TLS). Names and issuers mean nothing here: a
//! peer is its key, and the handshake's CertificateVerify proves it holds that key. The verifiers below
//! accept only ed25519 certificates, check the handshake signature, and ask the [`PeerPolicy`] whether
//! the key is admitted, so a key that is neither allowed nor eligible for evidence fails the handshake
//! with the reason.

use std::sync::Arc;

use cu_attest::NodeKey;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use x509_cert::der::Decode as _;

use crate::auth::{PeerPolicy, Refusal};
use crate::stats::QuicStats;

/// The ALPN protocol id of this protocol, version 1.
pub const ALPN: &[u8] = b"ao-cu/1";

/// The server name a client asks for; certificates are not checked against names.
pub const SERVER_NAME: &str = "ao-cu";

/// A TLS setup problem (not a peer's fault).
#[derive(Debug, thiserror::Error)]
#[error("TLS setup: {0}")]
pub struct TlsSetupError(pub String);

fn setup(e: impl std::fmt::Display) -> TlsSetupError {
    TlsSetupError(e.to_string())
}

/// The ed25519 public key a certificate carries.
pub fn certificate_key(cert: &[u8]) -> Result<[u8; 32], Refusal> {
    const ED25519: x509_cert::der::oid::ObjectIdentifier =
        x509_cert::der::oid::ObjectIdentifier::new_unwrap("1.3.101.112");
    let cert = x509_cert::Certificate::from_der(cert)
        .map_err(|e| Refusal::new("not_ed25519", format!("the certificate does not parse: {e}")))?;
    let spki = &cert.tbs_certificate.subject_public_key_info;
    if spki.algorithm.oid != ED25519 {
        return Err(Refusal::new(
            "not_ed25519",
            format!("the certificate key is {}, not ed25519", spki.algorithm.oid),
        ));
    }
    spki.subject_public_key
        .as_bytes()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| Refusal::new("not_ed25519", "the ed25519 key is not 32 bytes"))
}

/// A self-signed certificate for the node key, and the key in the form rustls loads.
pub fn node_certificate(
    key: &NodeKey,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TlsSetupError> {
    let pkcs8 = PrivatePkcs8KeyDer::from(key.pkcs8_der());
    let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519).map_err(setup)?;
    let mut params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_owned()]).map_err(setup)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("ao-cu {}", key.keyid()));
    let cert = params.self_signed(&pair).map_err(setup)?;
    Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(pkcs8)))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Checks peers' certificates for both directions.
#[derive(Debug)]
struct PeerVerifier {
    policy: PeerPolicy,
    provider: Arc<CryptoProvider>,
    stats: Arc<QuicStats>,
}

impl PeerVerifier {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), rustls::Error> {
        let admitted = if intermediates.is_empty() {
            certificate_key(end_entity).and_then(|key| self.policy.admit(&key).map(|_| ()))
        } else {
            Err(Refusal::new(
                "not_ed25519",
                "a node certificate stands alone, without a chain",
            ))
        };
        admitted.map_err(|refusal| {
            self.stats.refused(refusal.reason);
            tracing::warn!(reason = refusal.reason, detail = %refusal.detail, "QUIC peer refused at the handshake");
            rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(refusal))))
        })
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity, intermediates)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity, intermediates)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// Server and client TLS configurations of one node, both presenting the node key.
pub(crate) fn configs(
    key: &NodeKey,
    policy: &PeerPolicy,
    stats: &Arc<QuicStats>,
) -> Result<(rustls::ServerConfig, rustls::ClientConfig), TlsSetupError> {
    let provider = provider();
    let verifier = Arc::new(PeerVerifier {
        policy: policy.clone(),
        provider: provider.clone(),
        stats: stats.clone(),
    });
    let (cert, private) = node_certificate(key)?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(setup)?
        .with_client_cert_verifier(verifier.clone())
        .with_single_cert(vec![cert.clone()], private.clone_key())
        .map_err(setup)?;
    server.alpn_protocols = vec![ALPN.to_vec()];
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(setup)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![cert], private)
        .map_err(setup)?;
    client.alpn_protocols = vec![ALPN.to_vec()];
    Ok((server, client))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_carries_the_node_key() -> Result<(), Box<dyn std::error::Error>> {
        let key = NodeKey::from_seed([3; 32]);
        let (cert, _) = node_certificate(&key)?;
        assert_eq!(certificate_key(&cert)?, key.public_key());
        assert_eq!(
            certificate_key(b"not a cert").map_err(|r| r.reason),
            Err("not_ed25519")
        );
        Ok(())
    }
}
