//! PostgreSQL's TLS on the rustls + ring stack the Secrets Manager client already links: libpq's
//! `sslmode` checks (`require` encrypts and trusts any certificate, `verify-ca` checks the chain,
//! `verify-full` the chain and the host name), the CA bundle as the only roots, and the
//! `tls-server-end-point` channel binding that SCRAM-SHA-256-PLUS asks for.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use sha2::Digest as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use tokio_rustls::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::WebPkiSupportedAlgorithms,
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
    server::ParsedCertificate,
};

use crate::{
    config::SslMode,
    error::{InitError, one_line},
};

/// The Amazon RDS certificate authorities (see `certs/SOURCE.md`).
pub const RDS_CA_BUNDLE: &str = include_str!("../certs/rds-ca-bundle.pem");

/// Makes one TLS connector per connection (tokio-postgres's `MakeTlsConnect`); built once at cold start.
#[derive(Clone)]
pub struct MakeTlsConnector {
    config: Arc<ClientConfig>,
    /// Where the trusted CAs came from, for the message when the server's chain is not among them.
    roots: &'static str,
}

impl MakeTlsConnector {
    /// The connector for `mode`; `ca_pem` (the file `DB_CA_BUNDLE` names) replaces the compiled-in RDS bundle.
    pub fn new(mode: SslMode, ca_pem: Option<&[u8]>) -> Result<MakeTlsConnector, InitError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = match mode {
            SslMode::Disable | SslMode::Require => None,
            SslMode::VerifyCa | SslMode::VerifyFull => Some(Arc::new(root_store(
                ca_pem.unwrap_or(RDS_CA_BUNDLE.as_bytes()),
            )?)),
        };
        let verifier = Verifier {
            roots,
            check_host: mode == SslMode::VerifyFull,
            algorithms: provider.signature_verification_algorithms,
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| InitError::Tls(one_line(&format!("building the TLS configuration: {e}"))))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(MakeTlsConnector {
            config: Arc::new(config),
            roots: match ca_pem {
                Some(_) => "DB_CA_BUNDLE",
                None => "the compiled-in Amazon RDS CA bundle",
            },
        })
    }
}

/// Every certificate of `pem` as a root, or a `Tls` error naming the first one that does not load.
fn root_store(pem: &[u8]) -> Result<RootCertStore, InitError> {
    let mut roots = RootCertStore::empty();
    for (i, cert) in CertificateDer::pem_slice_iter(pem).enumerate() {
        let cert = cert.map_err(|e| bad_certificate(i + 1, e))?;
        roots.add(cert).map_err(|e| bad_certificate(i + 1, e))?;
    }
    if roots.is_empty() {
        return Err(InitError::Tls(
            "CA bundle holds no PEM certificate".to_string(),
        ));
    }
    Ok(roots)
}

fn bad_certificate(n: usize, reason: impl std::fmt::Display) -> InitError {
    InitError::Tls(one_line(&format!("CA bundle: certificate {n}: {reason}")))
}

/// libpq's checks: none for `require` (only the handshake signatures), the chain to `roots` for
/// `verify-ca`, and also the host name for `verify-full`. No revocation check, as libpq without a CRL.
#[derive(Debug)]
struct Verifier {
    roots: Option<Arc<RootCertStore>>,
    check_host: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(roots) = &self.roots else {
            return Ok(ServerCertVerified::assertion());
        };
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        if self.check_host {
            rustls::client::verify_server_name(&cert, server_name)?;
        }
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

impl<S> MakeTlsConnect<S> for MakeTlsConnector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type TlsConnect = TlsConnector;
    type Error = TlsError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<TlsConnector, TlsError> {
        // The name is parsed in `connect`: tokio-postgres asks for a connector even for `disable`.
        Ok(TlsConnector {
            maker: self.clone(),
            domain: domain.to_string(),
        })
    }
}

/// The handshake for one connection to `domain`.
pub struct TlsConnector {
    maker: MakeTlsConnector,
    domain: String,
}

impl<S> TlsConnect<S> for TlsConnector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type Error = TlsError;
    type Future = Pin<Box<dyn Future<Output = Result<TlsStream<S>, TlsError>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let name = ServerName::try_from(self.domain.clone()).map_err(|_| {
                TlsError(format!(
                    "{:?} is not a host name TLS can check",
                    self.domain
                ))
            })?;
            tokio_rustls::TlsConnector::from(self.maker.config)
                .connect(name, stream)
                .await
                .map(TlsStream)
                .map_err(|e| TlsError::handshake(&e, self.maker.roots))
        })
    }
}

/// Why TLS with the server failed, in one line; `db::classify` names every such error `Tls`.
#[derive(Debug)]
pub struct TlsError(String);

impl TlsError {
    fn handshake(err: &io::Error, roots: &str) -> TlsError {
        let cause = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>());
        let text = match cause {
            // BadSignature: a CA of the same name, another key (a regenerated or foreign CA).
            Some(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer | CertificateError::BadSignature,
            )) => {
                format!("the server's certificate is not signed by a CA of {roots}")
            }
            _ => err.to_string(),
        };
        TlsError(one_line(&text))
    }
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// An encrypted session with the server.
pub struct TlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
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

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for TlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        let (_, session) = self.0.get_ref();
        session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|cert| tls_server_end_point(cert))
            .map_or_else(ChannelBinding::none, ChannelBinding::tls_server_end_point)
    }
}

/// RFC 5929's `tls-server-end-point`: the server certificate hashed with its signature's hash
/// (SHA-256 for MD5 and SHA-1), as PostgreSQL computes it; `None` (no binding) for other algorithms.
fn tls_server_end_point(cert: &[u8]) -> Option<Vec<u8>> {
    Some(match end_point_hash(cert)? {
        Hash::Sha224 => sha2::Sha224::digest(cert).to_vec(),
        Hash::Sha256 => sha2::Sha256::digest(cert).to_vec(),
        Hash::Sha384 => sha2::Sha384::digest(cert).to_vec(),
        Hash::Sha512 => sha2::Sha512::digest(cert).to_vec(),
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Hash {
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

/// The channel-binding hash for the certificate's signature algorithm (RSA PKCS#1 or ECDSA).
fn end_point_hash(cert: &[u8]) -> Option<Hash> {
    // 1.2.840.113549.1.1.x (PKCS#1) and 1.2.840.10045.4.1 / 4.3.x (ECDSA), DER-encoded.
    const PKCS1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA_SHA2: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03];
    const ECDSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01];
    let oid = signature_algorithm(cert)?;
    if oid == ECDSA_SHA1 {
        return Some(Hash::Sha256);
    }
    let (family, last) = oid.split_last().map(|(last, family)| (family, *last))?;
    match (family, last) {
        (PKCS1, 4 | 5 | 11) | (ECDSA_SHA2, 2) => Some(Hash::Sha256),
        (PKCS1, 12) | (ECDSA_SHA2, 3) => Some(Hash::Sha384),
        (PKCS1, 13) | (ECDSA_SHA2, 4) => Some(Hash::Sha512),
        (PKCS1, 14) | (ECDSA_SHA2, 1) => Some(Hash::Sha224),
        _ => None,
    }
}

/// The OID of `Certificate.signatureAlgorithm` (the element after `tbsCertificate`).
fn signature_algorithm(cert: &[u8]) -> Option<&[u8]> {
    const SEQUENCE: u8 = 0x30;
    const OID: u8 = 0x06;
    let (certificate, _) = der_element(cert, SEQUENCE)?;
    let (_tbs, rest) = der_element(certificate, SEQUENCE)?;
    let (algorithm, _) = der_element(rest, SEQUENCE)?;
    let (oid, _) = der_element(algorithm, OID)?;
    Some(oid)
}

/// The content of the DER element at the start of `der` when its tag is `tag`, and what follows it.
fn der_element(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, rest) = rest.split_at(n);
        let len = bytes.iter().fold(0, |len, &b| (len << 8) | usize::from(b));
        (len, rest)
    };
    (found == tag && rest.len() >= len).then(|| rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificates(pem: &str) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn every_certificate_of_the_rds_bundle_is_a_root() {
        let roots = root_store(RDS_CA_BUNDLE.as_bytes()).unwrap();
        let blocks = RDS_CA_BUNDLE.matches("-----BEGIN CERTIFICATE-----").count();
        assert_eq!(roots.len(), blocks);
        assert!(blocks > 100, "{blocks} certificates");
    }

    #[test]
    fn a_bundle_without_certificates_is_a_tls_error() {
        let Err(err) = root_store(b"not a pem") else {
            panic!("a bundle without certificates must be rejected")
        };
        assert_eq!(err.error_type(), "Tls");
    }

    #[test]
    fn a_broken_certificate_is_a_tls_error_naming_it() {
        let ca = xtask::local::tls::RunCertificates::generate()
            .unwrap()
            .ca_pem;
        let broken =
            format!("{ca}-----BEGIN CERTIFICATE-----\nnot base64 !\n-----END CERTIFICATE-----\n");
        let Err(err) = root_store(broken.as_bytes()) else {
            panic!("a broken certificate must be rejected")
        };
        assert_eq!(err.error_type(), "Tls");
        assert!(
            err.to_string().starts_with("CA bundle: certificate 2: "),
            "{err}"
        );
        let Err(err) = MakeTlsConnector::new(SslMode::VerifyFull, Some(broken.as_bytes())) else {
            panic!("the connector must refuse the bundle")
        };
        assert_eq!(err.error_type(), "Tls");
    }

    #[test]
    fn every_rds_certificate_has_a_channel_binding_hash() {
        let certs = certificates(RDS_CA_BUNDLE);
        let hashes: Vec<_> = certs.iter().map(|c| end_point_hash(c)).collect();
        assert!(hashes.iter().all(Option::is_some), "{hashes:?}");
        // The bundle holds RSA SHA-256 (rsa2048), RSA SHA-384 (rsa4096) and ECDSA SHA-384 (ecc384) CAs.
        assert!(hashes.contains(&Some(Hash::Sha256)) && hashes.contains(&Some(Hash::Sha384)));
    }

    #[test]
    fn channel_binding_of_an_ecdsa_p256_certificate_is_its_sha256() {
        let pem = xtask::local::tls::RunCertificates::generate()
            .unwrap()
            .server_cert_pem;
        let cert = certificates(&pem).remove(0);
        assert_eq!(end_point_hash(&cert), Some(Hash::Sha256));
        assert_eq!(
            tls_server_end_point(&cert),
            Some(sha2::Sha256::digest(&cert).to_vec())
        );
        assert_eq!(tls_server_end_point(b"\x30\x03\x02\x01\x00"), None);
    }
}
