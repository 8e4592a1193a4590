//! TLS on both sides of the proxy: the HTTPS listener's server config and per-service upstream
//! client configs (`tls_verify`, `ca_certificates`).

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::model::{CaCertificate, Service};

/// The crypto provider used everywhere (ring), chosen explicitly so no process-wide default is
/// needed.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Build the proxy listener's TLS config from PEM files, offering h2 and http/1.1 by ALPN.
pub fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("reading certificate {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("parsing certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate found in {}", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("reading private key {}: {e}", key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not match: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// TLS settings towards one service's upstream.
#[derive(Debug)]
pub struct UpstreamTls {
    /// The rustls client config (ALPN `http/1.1`, or `h2` for grpcs services).
    pub config: Arc<rustls::ClientConfig>,
    /// Whether the certificate is verified (part of the pool key).
    pub verify: bool,
}

impl UpstreamTls {
    /// Build from the service's protocol (the ALPN offered), its `tls_verify` (null means off, Kong's `proxy_ssl_verify` default)
    /// and its `ca_certificates` (trusted roots when verifying; the public roots otherwise).
    pub fn for_service(service: &Service, cas: &[CaCertificate]) -> Result<Self, String> {
        let verify = service.tls_verify.unwrap_or(false);
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let mut config = if verify {
            let mut roots = rustls::RootCertStore::empty();
            match &service.ca_certificates {
                Some(ids) if !ids.is_empty() => {
                    for id in ids {
                        let ca = cas
                            .iter()
                            .find(|c| c.id == *id)
                            .ok_or_else(|| format!("ca_certificate {id} does not exist"))?;
                        for der in CertificateDer::pem_slice_iter(ca.cert.as_bytes()) {
                            let der = der.map_err(|e| format!("ca_certificate {id}: {e}"))?;
                            roots
                                .add(der)
                                .map_err(|e| format!("ca_certificate {id}: {e}"))?;
                        }
                    }
                }
                _ => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(no_verify())
                .with_no_client_auth()
        };
        // grpcs speaks HTTP/2 (h2 over TLS); everything else HTTP/1.1.
        config.alpn_protocols = if service.protocol == crate::model::Protocol::Grpcs {
            vec![b"h2".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        Ok(Self {
            config: Arc::new(config),
            verify,
        })
    }
}

/// A verifier that accepts any server certificate (still checking handshake signatures):
/// Kong's behaviour when `tls_verify` is off, and health probes without
/// `https_verify_certificate`.
pub fn no_verify() -> Arc<dyn ServerCertVerifier> {
    Arc::new(NoVerify(provider()))
}

/// Accepts any server certificate: Kong's behaviour when `tls_verify` is off.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
