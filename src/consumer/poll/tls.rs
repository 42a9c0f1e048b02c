//! `https://` upstreams: which roots the poller trusts, the ureq TLS
//! settings made of them, and what a TLS failure is called in `poll.error`.
//!
//! A scratch image has no system roots, so by default the poller trusts the
//! Mozilla roots built into the binary (webpki-roots). `UPSTREAM_CA_FILE`
//! replaces them with the certificates of a PEM file, read and checked once
//! at start; `UPSTREAM_INSECURE_SKIP_VERIFY` turns verification off, for lab
//! setups only (logged as a WARN at start and shown in `/stats`).

use std::fmt;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

/// The largest CA file read (Mozilla's whole bundle is about 220 KB); a
/// bigger one is refused, not read to its end (think `/dev/zero`).
pub const MAX_CA_FILE_BYTES: u64 = 16 << 20;

/// The certificates of `UPSTREAM_CA_FILE`, each usable as a root.
#[derive(Clone)]
pub struct CaFile {
    pub path: String,
    certs: Arc<Vec<Certificate<'static>>>,
}

impl fmt::Debug for CaFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CaFile({}, {} certificates)",
            self.path,
            self.certs.len()
        )
    }
}

impl CaFile {
    /// Reads `path` and keeps every `CERTIFICATE` in it. A file that cannot
    /// be read, is not PEM, holds no certificate, or holds one that cannot
    /// be a root is an error saying which.
    pub fn load(path: &str) -> Result<CaFile, String> {
        let pem = read(path)?;
        let certs = certificates(&pem)?;
        Ok(CaFile {
            path: path.to_string(),
            certs: Arc::new(certs),
        })
    }

    /// How many certificates it holds.
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    /// Never: [`CaFile::load`] refuses a file without certificates.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }
}

/// At most [`MAX_CA_FILE_BYTES`] of `path`.
fn read(path: &str) -> Result<Vec<u8>, String> {
    let pem = crate::config::read_at_most(path, MAX_CA_FILE_BYTES + 1)
        .map_err(|e| format!("a readable PEM file ({e})"))?;
    if pem.len() as u64 > MAX_CA_FILE_BYTES {
        return Err(format!("a PEM file of at most {MAX_CA_FILE_BYTES} bytes"));
    }
    Ok(pem)
}

/// Every `CERTIFICATE` section of `pem` (other sections, such as keys, are
/// skipped), each checked the way rustls will use it: as a trust anchor.
fn certificates(pem: &[u8]) -> Result<Vec<Certificate<'static>>, String> {
    let mut certs = Vec::new();
    for (i, der) in CertificateDer::pem_slice_iter(pem).enumerate() {
        let der = der.map_err(|e| {
            format!(
                "a PEM file of CA certificates (PEM: {})",
                crate::json::clipped(&e.to_string(), 120)
            )
        })?;
        rustls::RootCertStore::empty()
            .add(der.clone())
            .map_err(|e| format!("CA certificates (certificate {} is not: {e})", i + 1))?;
        certs.push(Certificate::from_der(der.as_ref()).to_owned());
    }
    if certs.is_empty() {
        return Err("a PEM file holding at least one CERTIFICATE".into());
    }
    Ok(certs)
}

/// How the pollers check `https://` upstreams.
#[derive(Debug, Clone, Default)]
pub struct UpstreamTls {
    /// `UPSTREAM_CA_FILE`; `None`: the bundled Mozilla roots.
    pub ca_file: Option<CaFile>,
    /// `UPSTREAM_INSECURE_SKIP_VERIFY`: any certificate is accepted.
    pub insecure_skip_verify: bool,
}

impl UpstreamTls {
    /// What is trusted: `"file"` (`UPSTREAM_CA_FILE`), `"bundled"` (the
    /// Mozilla roots) or `"none"` (verification is off).
    pub fn roots(&self) -> &'static str {
        match (&self.ca_file, self.insecure_skip_verify) {
            (_, true) => "none",
            (Some(_), false) => "file",
            (None, false) => "bundled",
        }
    }

    /// The ureq settings: rustls with ring, these roots, and verification
    /// off only when asked.
    pub fn config(&self) -> TlsConfig {
        let roots = match &self.ca_file {
            Some(f) => RootCerts::Specific(f.certs.clone()),
            None => RootCerts::WebPki,
        };
        TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .root_certs(roots)
            .disable_verification(self.insecure_skip_verify)
            .build()
    }

    /// `/stats`' `upstream_tls` member.
    pub fn to_json(&self) -> Value {
        json!({
            "roots": self.roots(),
            "ca_file": self.ca_file.as_ref().map(|f| f.path.as_str()),
            "insecure_skip_verify": self.insecure_skip_verify,
        })
    }
}

/// Why a poll failed in TLS, if it did: the handshake or a record was
/// refused (a certificate not trusted, not for this host, expired; an
/// upstream that does not speak TLS), said in a few words.
///
/// rustls' errors reach us as [`ureq::Error::Rustls`], or, from the
/// handshake, as an [`ureq::Error::Io`] of kind `InvalidData` wrapping the
/// `rustls::Error` (`ConnectionCommon::complete_io`).
pub fn failure(e: &ureq::Error) -> Option<String> {
    match e {
        ureq::Error::Rustls(e) => Some(describe(e)),
        ureq::Error::Tls(why) => Some(why.to_string()),
        ureq::Error::Pem(e) => Some(format!("PEM: {e}")),
        ureq::Error::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .map(describe),
        _ => None,
    }
}

/// A rustls error in words: its own (`invalid peer certificate:
/// UnknownIssuer`), but for bytes that are not TLS at all (what a
/// plain-HTTP server answers), and webpki's reasons, which rustls wraps as
/// `Other(OtherError(…))`; the one a lab setup meets first, a CA
/// certificate served as the server's own (`openssl req -x509` makes
/// `CA:TRUE` unless told otherwise), gets a hint.
fn describe(e: &rustls::Error) -> String {
    use rustls::{CertificateError, InvalidMessage};
    match e {
        rustls::Error::InvalidMessage(InvalidMessage::InvalidContentType) => {
            "upstream does not speak TLS (a plain http:// server?)".into()
        }
        rustls::Error::InvalidCertificate(CertificateError::Other(why)) => {
            match why.to_string().as_str() {
                "CaUsedAsEndEntity" => "invalid peer certificate: CaUsedAsEndEntity \
                    (the upstream presents a CA certificate as its own; it needs one with CA:FALSE)"
                    .into(),
                why => format!("invalid peer certificate: {why}"),
            }
        }
        other => other.to_string(),
    }
}

/// A CA certificate for unit tests (its key was not kept), made once with
/// `openssl req -x509`; valid until 2126.
#[cfg(test)]
pub(crate) const TEST_CA_PEM: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIBtjCCAV2gAwIBAgIURN8BzWyCRbnYZ47bcRYIV9JgxDIwCgYIKoZIzj0EAwIw\n\
KDEmMCQGA1UEAwwdZmFicmljLXRlbGVtZXRyeSB1bml0LXRlc3QgQ0EwIBcNMjYx\n\
MjAyMDUyNjEzWhgPMjEyNjExMDgwNTI2MTNaMCgxJjAkBgNVBAMMHWZhYnJpYy10\n\
ZWxlbWV0cnkgdW5pdC10ZXN0IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n\
qwxj1642utkyjYUhLZtiPbjppg90oO4+YCvMzohs7l+hpshv39HlWfdeXX0UzDQK\n\
mqJuZ0papGTwFwJ+LaaUj6NjMGEwHQYDVR0OBBYEFMvCs4CtIlhvmZW9hLeb6Odb\n\
d63ZMB8GA1UdIwQYMBaAFMvCs4CtIlhvmZW9hLeb6Odbd63ZMA8GA1UdEwEB/wQF\n\
MAMBAf8wDgYDVR0PAQH/BAQDAgEGMAoGCCqGSM49BAMCA0cAMEQCIDP1WLDsjWM2\n\
JPfHmtZIZbKymDm4Gc+NSqgJyuWrVlQnAiACRlU5tPE7sGtuU/PYFq9Z4TQ9cMI4\n\
09Z36wj60m57BA==\n\
-----END CERTIFICATE-----\n\
";

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::CertificateError;
    use std::io;

    #[test]
    fn roots_name_what_is_trusted() {
        let mut t = UpstreamTls::default();
        assert_eq!(t.roots(), "bundled");
        assert_eq!(
            t.to_json(),
            json!({"roots": "bundled", "ca_file": null, "insecure_skip_verify": false})
        );
        t.insecure_skip_verify = true;
        assert_eq!(t.roots(), "none");
        assert!(t.config().disable_verification());
        t.insecure_skip_verify = false;
        assert!(!t.config().disable_verification());
        assert!(matches!(t.config().root_certs(), RootCerts::WebPki));
    }

    #[test]
    fn certificate_errors_are_tls_failures() {
        let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        // As ureq hands them over from the handshake: io::Error(InvalidData).
        let io_wrapped =
            ureq::Error::Io(io::Error::new(io::ErrorKind::InvalidData, unknown.clone()));
        assert_eq!(
            failure(&io_wrapped).as_deref(),
            Some("invalid peer certificate: UnknownIssuer")
        );
        assert_eq!(
            failure(&ureq::Error::Rustls(unknown)).as_deref(),
            Some("invalid peer certificate: UnknownIssuer")
        );
        let expired = rustls::Error::InvalidCertificate(CertificateError::Expired);
        assert_eq!(
            failure(&ureq::Error::Rustls(expired)).as_deref(),
            Some("invalid peer certificate: Expired")
        );
        assert_eq!(
            failure(&ureq::Error::Tls("Rustls invalid dns name error")).as_deref(),
            Some("Rustls invalid dns name error")
        );
        assert!(
            failure(&ureq::Error::Pem(
                rustls::pki_types::pem::Error::NoItemsFound
            ))
            .is_some_and(|r| r.starts_with("PEM: "))
        );
    }

    /// An error that reads as webpki's of that name.
    #[derive(Debug)]
    struct Webpki(&'static str);

    impl fmt::Display for Webpki {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Webpki {}

    fn webpki(name: &'static str) -> ureq::Error {
        let other = rustls::OtherError(Arc::new(Webpki(name)));
        ureq::Error::Rustls(rustls::Error::InvalidCertificate(CertificateError::Other(
            other,
        )))
    }

    #[test]
    fn webpki_reasons_are_unwrapped() {
        assert_eq!(
            failure(&webpki("UnsupportedCertVersion")).as_deref(),
            Some("invalid peer certificate: UnsupportedCertVersion")
        );
        let hint = failure(&webpki("CaUsedAsEndEntity")).unwrap();
        assert!(
            hint.starts_with("invalid peer certificate: CaUsedAsEndEntity (")
                && hint.contains("CA:FALSE"),
            "{hint}"
        );
    }

    #[test]
    fn plain_http_answers_are_named() {
        let not_tls = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
        let e = ureq::Error::Io(io::Error::new(io::ErrorKind::InvalidData, not_tls));
        assert_eq!(
            failure(&e).as_deref(),
            Some("upstream does not speak TLS (a plain http:// server?)")
        );
    }

    #[test]
    fn other_errors_are_not_tls() {
        for e in [
            ureq::Error::Io(io::Error::from(io::ErrorKind::ConnectionRefused)),
            ureq::Error::Io(io::Error::new(io::ErrorKind::InvalidData, "not rustls")),
            ureq::Error::Io(io::Error::other("x")),
            ureq::Error::HostNotFound,
            ureq::Error::ConnectionFailed,
        ] {
            assert_eq!(failure(&e), None, "{e}");
        }
    }

    #[test]
    fn certificates_are_taken_and_other_sections_skipped() {
        assert_eq!(certificates(TEST_CA_PEM.as_bytes()).unwrap().len(), 1);
        let bundle = format!(
            "# a comment\n{TEST_CA_PEM}-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n{TEST_CA_PEM}"
        );
        let certs = certificates(bundle.as_bytes()).unwrap();
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[0].der(), certs[1].der());
    }

    #[test]
    fn pem_without_certificates_is_refused() {
        for (pem, want) in [
            (&b""[..], "at least one CERTIFICATE"),
            (b"hello\n", "at least one CERTIFICATE"),
            (
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                "at least one CERTIFICATE",
            ),
            (
                b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
                "PEM: ",
            ),
            (b"-----BEGIN CERTIFICATE-----\nAAAA\n", "PEM: "),
            // Valid PEM, but the DER is not a certificate.
            (
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "certificate 1 is not",
            ),
        ] {
            let err = certificates(pem).unwrap_err();
            assert!(err.contains(want), "{pem:?}: {err}");
        }
    }

    #[test]
    fn unreadable_ca_files_say_why() {
        let err = CaFile::load("/nonexistent/ca.pem").unwrap_err();
        assert!(err.starts_with("a readable PEM file ("), "{err}");
        let err = CaFile::load("/").unwrap_err();
        assert!(err.starts_with("a readable PEM file ("), "{err}");
    }
}
