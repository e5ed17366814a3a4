//! TLS for every connection bulkget makes: rustls with the *ring* crypto
//! provider (pure Rust and a little C/asm built by `cc`: it builds with the
//! machine's gcc alone, where aws-lc-rs would also want cmake and a longer
//! build). Trust: the platform's roots (`rustls-native-certs`, which reads
//! `SSL_CERT_FILE` and `SSL_CERT_DIR` as OpenSSL does) plus the PEM files of
//! `--cacert`; `--insecure` accepts any certificate. One client config per
//! run, so sessions resume across all connections to a host (rustls keeps
//! the tickets), with ALPN offering `h2` unless HTTP/1.1 is forced.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientSessionMemoryCache, Resumption};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::error::RunError;

/// How to trust servers.
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// Extra CA certificates (PEM), trusted besides the platform's.
    pub cacert: Vec<PathBuf>,
    /// Accept any certificate (`-k`).
    pub insecure: bool,
    /// Offer only HTTP/1.1 by ALPN.
    pub http1_only: bool,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The run's client config. Errors name the file that could not be used.
pub fn client_config(o: &TlsOptions) -> Result<Arc<ClientConfig>, RunError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| RunError::Other(format!("TLS setup: {e}")))?;
    let mut cfg = if o.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth()
    } else {
        builder
            .with_root_certificates(roots(&o.cacert)?)
            .with_no_client_auth()
    };
    cfg.alpn_protocols = if o.http1_only {
        vec![b"http/1.1".to_vec()]
    } else {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    };
    cfg.resumption = Resumption::store(Arc::new(ClientSessionMemoryCache::new(1024)));
    Ok(Arc::new(cfg))
}

fn roots(extra: &[PathBuf]) -> Result<RootCertStore, RunError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    for p in extra {
        let bad = |why: String| RunError::Other(format!("--cacert {}: {why}", p.display()));
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(p)
            .map_err(|e| bad(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no PEM certificate in it".into()));
        }
        let (_, ignored) = roots.add_parsable_certificates(certs);
        if ignored > 0 {
            return Err(bad(format!("{ignored} certificate(s) could not be parsed")));
        }
    }
    if roots.is_empty() {
        eprintln!(
            "bulkget: warning: no trusted CA certificates found (platform store, SSL_CERT_FILE, SSL_CERT_DIR); https will fail unless --cacert or --insecure is given"
        );
    }
    Ok(roots)
}

/// The name to check the certificate against (a DNS name or an IP).
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host:?} is not a valid TLS name: {e}"))
}

/// What a handshake error means, in words, if it is a TLS error at all
/// (an I/O error is not: it is retried like any broken connection).
pub fn describe(e: &std::io::Error, host: &str) -> Option<String> {
    let inner = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    Some(match inner {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => {
                "certificate signed by an unknown issuer (not in the trust store; see --cacert)"
                    .into()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "certificate expired".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "certificate not valid yet".into()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!("certificate not valid for the name {host}")
            }
            CertificateError::Revoked => "certificate revoked".into(),
            other => format!("bad certificate: {other:?}"),
        },
        other => format!("handshake failed: {other}"),
    })
}

/// `--insecure`: any certificate is accepted; handshake signatures are still
/// checked, so the session is encrypted to whoever holds the key.
#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
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
