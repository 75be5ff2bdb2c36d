//! Per-run TLS material for local Postgres servers: a throwaway CA and a server certificate for
//! `localhost` only, so `sslmode=verify-full` is exercised exactly as against RDS.

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// The host name in the server certificate (the only SAN; no IP SAN on purpose, so verify-full
/// against `127.0.0.1` fails with a hostname mismatch).
pub const SERVER_NAME: &str = "localhost";

/// A CA certificate and a server certificate (with its private key) signed by it, all PEM.
pub struct RunCertificates {
    /// PEM of the CA that signed the server certificate: what `DB_CA_BUNDLE` points to.
    pub ca_pem: String,
    /// PEM of the server certificate (SAN `DNS:localhost` only).
    pub server_cert_pem: String,
    /// PEM (PKCS#8) of the server certificate's private key.
    pub server_key_pem: String,
}

impl RunCertificates {
    /// Generate a fresh CA and a `localhost` server certificate signed by it.
    pub fn generate() -> anyhow::Result<RunCertificates> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.distinguished_name = name("init-fn local test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().context("tls: generate CA key")?;
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).context("tls: self-sign CA")?;

        let mut server_params = CertificateParams::new(vec![SERVER_NAME.to_string()])?;
        server_params.distinguished_name = name(SERVER_NAME);
        server_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        server_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate().context("tls: generate server key")?;
        let server_cert = server_params
            .signed_by(&server_key, &ca)
            .context("tls: sign server certificate")?;

        Ok(RunCertificates {
            ca_pem: ca.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
        })
    }
}

/// A `localhost` certificate that signs itself, and its key (PEM): no CA vouches for it, so
/// `sslmode=require` accepts it and `verify-ca` refuses it.
pub fn self_signed_server() -> anyhow::Result<(String, String)> {
    let certified = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string()])
        .context("tls: self-sign a server certificate")?;
    Ok((certified.cert.pem(), certified.signing_key.serialize_pem()))
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_pem_material() {
        let certs = RunCertificates::generate().unwrap();
        assert!(certs.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(
            certs
                .server_cert_pem
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert!(certs.server_key_pem.contains("PRIVATE KEY-----"));
        assert_ne!(certs.ca_pem, certs.server_cert_pem);
    }
}
