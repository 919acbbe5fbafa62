//! TLS for PostgreSQL sessions (repositories and monitored servers), with rustls behind
//! tokio-postgres' `MakeTlsConnect`.
//!
//! The modes mean what they mean in libpq, because that is what DBAs expect:
//! * `disable`: plain TCP;
//! * `prefer`: TLS when the server offers it, without checking its certificate (as libpq);
//! * `require`: TLS or fail, certificate not checked (encryption against passive
//!   listeners only);
//! * `verify-ca`: TLS, and the certificate chain must lead to `sslrootcert`; the host
//!   name is not compared (for servers reached by an address their certificate does not
//!   name);
//! * `verify-full`: chain to `sslrootcert` and the certificate must name the host.
//!
//! tokio-postgres only knows disable/prefer/require at the protocol level, so verify-ca
//! and verify-full run as `require` with a verifying connector. There is no default trust
//! store: verification needs an explicit `sslrootcert`, so a mis-set path fails loudly
//! instead of silently trusting every public CA.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

use super::SslMode;

/// Why TLS could not be set up from the settings.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("sslmode = {mode} needs sslrootcert (the CA certificate file, PEM) to check the server's certificate")]
    MissingRootCert { mode: &'static str },
    #[error("sslrootcert {path}: {reason}")]
    RootCert { path: PathBuf, reason: String },
    #[error("TLS setup: {0}")]
    Rustls(String),
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// What tokio-postgres is told: it negotiates, our connector verifies.
    pub fn protocol_mode(self) -> tokio_postgres::config::SslMode {
        match self {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads the PEM certificates of `path` into a root store.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let err = |reason: String| TlsError::RootCert {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    let mut n = 0;
    for item in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
        let cert: CertificateDer<'static> =
            item.map_err(|e| err(format!("not a PEM certificate file ({e})")))?;
        roots
            .add(cert)
            .map_err(|e| err(format!("unusable certificate ({e})")))?;
        n += 1;
    }
    if n == 0 {
        return Err(err(
            "no certificate found (expected -----BEGIN CERTIFICATE----- blocks)".into(),
        ));
    }
    Ok(roots)
}

/// The connector for `mode`, or None for `disable`.
pub fn connector(mode: SslMode, rootcert: Option<&Path>) -> Result<Option<MakeRustls>, TlsError> {
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        SslMode::Disable => return Ok(None),
        SslMode::Prefer | SslMode::Require => Arc::new(Lenient {
            chain: None,
            provider: provider(),
        }),
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let path = rootcert.ok_or(TlsError::MissingRootCert {
                mode: mode.as_str(),
            })?;
            let roots = load_roots(path)?;
            let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| TlsError::Rustls(e.to_string()))?;
            if mode == SslMode::VerifyCa {
                Arc::new(Lenient {
                    chain: Some(inner),
                    provider: provider(),
                })
            } else {
                inner
            }
        }
    };
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Some(MakeRustls {
        config: Arc::new(config),
    }))
}

/// prefer/require: any certificate (`chain` None); verify-ca: the full webpki check
/// through `chain`, except that a name mismatch is accepted. Either way the handshake
/// signatures are checked, so the session keys belong to whoever holds the certificate's
/// key.
#[derive(Debug)]
struct Lenient {
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Makes one rustls connector per connection attempt (tokio-postgres' `MakeTlsConnect`).
#[derive(Clone)]
pub struct MakeRustls {
    config: Arc<ClientConfig>,
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, io::Error> {
        let name = ServerName::try_from(domain.to_string()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{domain}` is not a valid TLS server name ({e})"),
            )
        })?;
        Ok(RustlsConnect {
            connector: tokio_rustls::TlsConnector::from(Arc::clone(&self.config)),
            name,
        })
    }
}

pub struct RustlsConnect {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let s = self.connector.connect(self.name, stream).await?;
            Ok(RustlsStream(s))
        })
    }
}

/// A TLS session over a PostgreSQL socket.
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S> tokio_postgres::tls::TlsStream for RustlsStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM channel binding would need the certificate's signature hash algorithm;
        // without it the driver falls back to plain SCRAM, as libpq does by default.
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_needs_a_root_certificate() {
        assert!(matches!(
            connector(SslMode::VerifyFull, None),
            Err(TlsError::MissingRootCert { .. })
        ));
        assert!(connector(SslMode::Disable, None).unwrap().is_none());
        assert!(connector(SslMode::Require, None).unwrap().is_some());
    }

    #[test]
    fn unreadable_or_empty_root_files_say_so() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let e = connector(SslMode::VerifyCa, Some(&missing))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("nope.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "hello").unwrap();
        let e = connector(SslMode::VerifyCa, Some(&empty))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("no certificate found"), "{e}");
    }
}
