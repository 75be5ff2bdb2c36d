//! PostgreSQL's TLS: `postgres-native-tls` over `native-tls` (OpenSSL), with libpq's `sslmode`
//! checks — `require` encrypts and trusts any certificate, `verify-ca` checks the chain against the CA
//! bundle only, `verify-full` the chain and the host name (SAN dNSName/IP, the CN when there is no
//! SAN) — and the `tls-server-end-point` channel binding SCRAM-SHA-256-PLUS asks for. OpenSSL's
//! verify results become one line of words naming where the trusted CAs came from.

use std::{future::Future, pin::Pin};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};

use crate::{
    config::SslMode,
    error::{InitError, one_line},
};

/// The Amazon RDS certificate authorities (see `certs/SOURCE.md`).
pub const RDS_CA_BUNDLE: &str = include_str!("../../certs/rds-ca-bundle.pem");

/// Where the roots came from when `DB_CA_BUNDLE` is unset.
const COMPILED_IN: &str = "the compiled-in Amazon RDS CA bundle";

/// Makes one TLS connector per connection (tokio-postgres's `MakeTlsConnect`); built once at cold start.
#[derive(Clone)]
pub struct MakeTlsConnector {
    inner: postgres_native_tls::MakeTlsConnector,
    /// Where the trusted CAs came from (`DB_CA_BUNDLE <path>` or the compiled-in bundle), for messages.
    roots: String,
}

impl MakeTlsConnector {
    /// The connector for `mode`; `ca_pem` (the file `DB_CA_BUNDLE` names) replaces the compiled-in RDS bundle.
    pub fn new(mode: SslMode, ca_pem: Option<&[u8]>) -> Result<MakeTlsConnector, InitError> {
        let roots = match ca_pem {
            Some(_) => "DB_CA_BUNDLE".to_string(),
            None => COMPILED_IN.to_string(),
        };
        MakeTlsConnector::with_roots(mode, ca_pem, roots)
    }

    /// As [`MakeTlsConnector::new`], with `roots` naming where `ca_pem` came from in every message.
    pub fn with_roots(
        mode: SslMode,
        ca_pem: Option<&[u8]>,
        roots: String,
    ) -> Result<MakeTlsConnector, InitError> {
        let mut builder = native_tls::TlsConnector::builder();
        // The system's CAs never count: libpq trusts only its root file, this function only the bundle.
        builder.disable_built_in_roots(true);
        match mode {
            SslMode::Disable | SslMode::Require => {
                builder.danger_accept_invalid_certs(true);
                builder.danger_accept_invalid_hostnames(true);
            }
            SslMode::VerifyCa | SslMode::VerifyFull => {
                let pem = ca_pem.unwrap_or(RDS_CA_BUNDLE.as_bytes());
                for cert in bundle_certificates(pem, &roots)? {
                    builder.add_root_certificate(cert);
                }
                builder.danger_accept_invalid_hostnames(mode == SslMode::VerifyCa);
            }
        }
        let connector = builder.build().map_err(|e| {
            InitError::Tls(one_line(&format!(
                "building the TLS connector (roots: {roots}): {e}"
            )))
        })?;
        Ok(MakeTlsConnector {
            inner: postgres_native_tls::MakeTlsConnector::new(connector),
            roots,
        })
    }
}

/// What a connector is built from: the mode, and the CA bundle with where it came from (`None`: the
/// compiled-in RDS bundle).
type Spec = (SslMode, Option<(Vec<u8>, String)>);

/// The connector, built on a thread of its own from cold start. Building it costs tens of
/// milliseconds that are not ours to skip: native-tls has OpenSSL read the system's CA file before it
/// can switch the system roots off, and the compiled-in RDS bundle is 115 certificates to parse. On
/// this thread that work overlaps the runtime's first event and the secret's fetch instead of
/// preceding them; the first connection waits for what is left of it. Its errors are the same
/// `Tls` errors, returned to every invocation that needs the connector.
pub struct Building {
    spec: Spec,
    built: tokio::sync::OnceCell<Result<MakeTlsConnector, InitError>>,
    pending: std::sync::Mutex<
        Option<tokio::sync::oneshot::Receiver<Result<MakeTlsConnector, InitError>>>,
    >,
}

impl Building {
    /// Start building the connector for `mode` with `ca` (the bundle's PEM and where it came from;
    /// `None`: the compiled-in RDS bundle). Never fails: a thread that cannot start, or that
    /// panics, leaves the work to the first [`Building::get`].
    pub fn start(mode: SslMode, ca: Option<(Vec<u8>, String)>) -> Building {
        let spec: Spec = (mode, ca);
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let copy = spec.clone();
        let pending = std::thread::Builder::new()
            .name("tls-connector".to_string())
            .spawn(move || {
                // The receiver is gone only when the state is: nothing is waiting for this.
                let _ = sender.send(build(&copy));
            })
            .ok()
            .map(|_| receiver);
        Building {
            spec,
            built: tokio::sync::OnceCell::new(),
            pending: std::sync::Mutex::new(pending),
        }
    }

    /// The connector (or its `Tls` error), waiting for the thread the first time.
    pub async fn get(&self) -> Result<MakeTlsConnector, InitError> {
        self.built
            .get_or_init(|| async {
                let pending = self
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                match pending {
                    Some(receiver) => match receiver.await {
                        Ok(built) => built,
                        Err(_) => build(&self.spec),
                    },
                    None => build(&self.spec),
                }
            })
            .await
            .clone()
    }
}

fn build((mode, ca): &Spec) -> Result<MakeTlsConnector, InitError> {
    match ca {
        Some((pem, roots)) => MakeTlsConnector::with_roots(*mode, Some(pem), roots.clone()),
        None => MakeTlsConnector::new(*mode, None),
    }
}

/// Every certificate of the PEM bundle, or a `Tls` error naming the first that does not load.
fn bundle_certificates(pem: &[u8], roots: &str) -> Result<Vec<native_tls::Certificate>, InitError> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let text = String::from_utf8_lossy(pem);
    let mut certs = Vec::new();
    let mut rest = text.as_ref();
    while let Some(start) = rest.find(BEGIN) {
        let n = certs.len() + 1;
        let block = &rest[start..];
        let Some(end) = block.find(END) else {
            return Err(bad_certificate(n, roots, "no END CERTIFICATE line"));
        };
        let (one, after) = block.split_at(end + END.len());
        let cert = native_tls::Certificate::from_pem(one.as_bytes())
            .map_err(|e| bad_certificate(n, roots, e))?;
        certs.push(cert);
        rest = after;
    }
    if certs.is_empty() {
        return Err(InitError::Tls(format!(
            "CA bundle holds no PEM certificate ({roots})"
        )));
    }
    Ok(certs)
}

fn bad_certificate(n: usize, roots: &str, reason: impl std::fmt::Display) -> InitError {
    InitError::Tls(one_line(&format!(
        "CA bundle: certificate {n} does not load ({roots}): {reason}"
    )))
}

impl<S> MakeTlsConnect<S> for MakeTlsConnector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = postgres_native_tls::TlsStream<S>;
    type TlsConnect = TlsConnector;
    type Error = TlsError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<TlsConnector, TlsError> {
        let inner = MakeTlsConnect::<S>::make_tls_connect(&mut self.inner, domain)
            .map_err(|e| TlsError::words(&e.to_string(), &self.roots))?;
        Ok(TlsConnector {
            inner,
            roots: self.roots.clone(),
        })
    }
}

/// The handshake for one connection.
pub struct TlsConnector {
    inner: postgres_native_tls::TlsConnector,
    roots: String,
}

impl<S> TlsConnect<S> for TlsConnector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = postgres_native_tls::TlsStream<S>;
    type Error = TlsError;
    type Future =
        Pin<Box<dyn Future<Output = Result<postgres_native_tls::TlsStream<S>, TlsError>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let roots = self.roots;
        let handshake = self.inner.connect(stream);
        Box::pin(async move {
            handshake
                .await
                .map_err(|e| TlsError::words(&e.to_string(), &roots))
        })
    }
}

/// Why TLS with the server failed, in one line; `db::classify` names every such error `Tls`.
#[derive(Debug)]
pub struct TlsError(String);

impl TlsError {
    /// native-tls shows OpenSSL's verify result in the last parentheses (`… (certificate has
    /// expired)`): that result in words, where the roots came from, and OpenSSL's own text after it.
    fn words(raw: &str, roots: &str) -> TlsError {
        let raw = one_line(raw);
        let verify = raw
            .strip_suffix(')')
            .and_then(|r| r.rfind(" (").map(|i| &r[i + 2..]))
            .unwrap_or("")
            .to_lowercase();
        let checked = format!("(checked against {roots})");
        let said = if verify.is_empty() {
            raw.clone()
        } else {
            verify.clone()
        };
        let text = match verify.as_str() {
            "certificate has expired" => {
                format!("the server's certificate has expired {checked}")
            }
            "certificate is not yet valid" => {
                format!("the server's certificate is not yet valid {checked}")
            }
            "self-signed certificate" | "self signed certificate" => format!(
                "the server's certificate is self-signed and not in the trusted CAs {checked}"
            ),
            "unable to get local issuer certificate"
            | "unable to get issuer certificate"
            | "self-signed certificate in certificate chain"
            | "self signed certificate in certificate chain"
            | "unable to verify the first certificate"
            | "certificate signature failure" => {
                format!("the server's certificate is not signed by a CA of {roots}")
            }
            "hostname mismatch" | "ip address mismatch" => format!(
                "the server's certificate is not for this host name (DB_SSLMODE=verify-full) {checked}"
            ),
            "certificate revoked" => format!("the server's certificate is revoked {checked}"),
            "invalid ca certificate" | "invalid non-ca certificate (has ca markings)" => format!(
                "the server's certificate chain has a certificate in the wrong role {checked}"
            ),
            "unsupported certificate purpose" => {
                format!("the server's certificate is not meant for a TLS server {checked}")
            }
            "certificate chain too long" | "path length constraint exceeded" => {
                format!("the server's certificate chain is too long {checked}")
            }
            "ca md too weak" | "ee key too small" | "ca key too small" => format!(
                "the server's certificate uses a key or hash OpenSSL considers too weak {checked}"
            ),
            "" => format!("the TLS handshake failed {checked}"),
            _ => format!("the server's certificate was refused {checked}"),
        };
        TlsError(one_line(&format!("{text} ({said})")))
    }
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_certificate_of_the_rds_bundle_is_a_root() {
        let certs = bundle_certificates(RDS_CA_BUNDLE.as_bytes(), COMPILED_IN).unwrap();
        let blocks = RDS_CA_BUNDLE.matches("-----BEGIN CERTIFICATE-----").count();
        assert_eq!(certs.len(), blocks);
        assert!(blocks > 100, "{blocks} certificates");
        assert!(MakeTlsConnector::new(SslMode::VerifyFull, None).is_ok());
    }

    #[test]
    fn a_bundle_without_certificates_is_a_tls_error() {
        for pem in [&b"not a pem"[..], b""] {
            let Err(err) = MakeTlsConnector::with_roots(
                SslMode::VerifyCa,
                Some(pem),
                "DB_CA_BUNDLE /x.pem".into(),
            ) else {
                panic!("a bundle without certificates must be rejected")
            };
            assert_eq!(err.error_type(), "Tls");
            assert_eq!(
                err.to_string(),
                "CA bundle holds no PEM certificate (DB_CA_BUNDLE /x.pem)"
            );
        }
    }

    #[test]
    fn a_broken_certificate_is_a_tls_error_naming_it() {
        let ca = xtask::local::tls::RunCertificates::generate()
            .unwrap()
            .ca_pem;
        let broken =
            format!("{ca}-----BEGIN CERTIFICATE-----\nnot base64 !\n-----END CERTIFICATE-----\n");
        let Err(err) = bundle_certificates(broken.as_bytes(), "DB_CA_BUNDLE /x.pem") else {
            panic!("a broken certificate must be rejected")
        };
        assert_eq!(err.error_type(), "Tls");
        let msg = err.to_string();
        assert!(
            msg.starts_with("CA bundle: certificate 2 does not load (DB_CA_BUNDLE /x.pem): "),
            "{msg}"
        );
        assert!(!msg.contains('\n') && !msg.contains("Error {"), "{msg}");
        let Err(err) = MakeTlsConnector::new(SslMode::VerifyFull, Some(broken.as_bytes())) else {
            panic!("the connector must refuse the bundle")
        };
        assert_eq!(err.error_type(), "Tls");
    }

    #[test]
    fn openssl_verify_results_become_words() {
        let raw = "error:0A000086:SSL routines:tls_post_process_server_certificate:certificate verify \
                   failed:../ssl/statem/statem_clnt.c:1889: (certificate has expired)";
        let e = TlsError::words(raw, "DB_CA_BUNDLE /tmp/ca.pem").to_string();
        assert_eq!(
            e,
            "the server's certificate has expired (checked against DB_CA_BUNDLE /tmp/ca.pem) \
             (certificate has expired)"
        );
        let e = TlsError::words("x (Hostname mismatch)", COMPILED_IN).to_string();
        assert!(
            e.starts_with("the server's certificate is not for this host name"),
            "{e}"
        );
        assert!(e.contains(COMPILED_IN), "{e}");
        let e = TlsError::words("x (unable to get local issuer certificate)", "R").to_string();
        assert!(
            e.starts_with("the server's certificate is not signed by a CA of R"),
            "{e}"
        );
        let e = TlsError::words("connection reset by peer", "R").to_string();
        assert_eq!(
            e,
            "the TLS handshake failed (checked against R) (connection reset by peer)"
        );
    }
}
