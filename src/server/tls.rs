//! TLS on a listener: the `TLS_CERT_FILE` / `TLS_KEY_FILE` knobs, the
//! certificate they name, and its rotation.
//!
//! The pair is read and checked at start (a bad one exits 2 naming the
//! knob). The rustls configuration resolves the certificate through
//! [`Certs`], which holds the current pair behind a lock: [`Certs::reload`]
//! (on `SIGHUP`) reads the files again and swaps the pair in only if it is
//! good, so new handshakes use it and open connections keep theirs. TLS 1.3
//! and 1.2 only, through rustls with the ring provider (the same rustls
//! and provider ureq uses for HTTPS upstreams).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::clock;
use crate::config::{Error, Knob, Values};
use crate::log::{Event, Level};
use crate::prometheus::Exposition;

pub static KNOBS: &[Knob] = &[
    Knob {
        env: "TLS_CERT_FILE",
        flag: "tls-cert-file",
        default: "",
        help: "PEM certificate chain (leaf first): serve HTTPS instead of HTTP. Needs TLS_KEY_FILE; SIGHUP re-reads both.",
    },
    Knob {
        env: "TLS_KEY_FILE",
        flag: "tls-key-file",
        default: "",
        help: "PEM private key of that certificate (PKCS#8, PKCS#1 or SEC1, unencrypted).",
    },
];

/// A certificate or key file larger than this is refused.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// The knobs' values: `None` when TLS is off; exits 2 (through the error)
/// when only one is set or the pair is not good.
pub fn from_values(v: &Values) -> Result<Option<Arc<Certs>>, Error> {
    match (v.get("TLS_CERT_FILE"), v.get("TLS_KEY_FILE")) {
        (None, None) => Ok(None),
        (Some(_), None) => {
            Err(v.invalid("TLS_KEY_FILE", "a key file too, since TLS_CERT_FILE is set"))
        }
        (None, Some(_)) => Err(v.invalid(
            "TLS_CERT_FILE",
            "a certificate file too, since TLS_KEY_FILE is set",
        )),
        (Some(cert), Some(key)) => {
            let files = Files {
                cert: PathBuf::from(cert),
                key: PathBuf::from(key),
            };
            match Pair::load(&files) {
                Ok(pair) => Ok(Some(Arc::new(Certs {
                    files,
                    current: RwLock::new(Arc::new(pair)),
                }))),
                Err(e) => Err(v.invalid(e.knob, e.why)),
            }
        }
    }
}

/// Where the pair is read from.
#[derive(Debug, Clone)]
struct Files {
    cert: PathBuf,
    key: PathBuf,
}

/// Why a pair was refused, and which knob's file is at fault.
#[derive(Debug)]
pub struct PairError {
    pub knob: &'static str,
    pub why: String,
}

impl fmt::Display for PairError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.knob, self.why)
    }
}

/// A certificate chain with its key, checked to belong together.
struct Pair {
    key: Arc<CertifiedKey>,
    about: About,
}

/// What the log says about a certificate.
#[derive(Debug, Clone, PartialEq)]
pub struct About {
    /// The leaf's serial number in hex, as `openssl x509 -serial` shows it.
    pub serial: String,
    /// When it expires, RFC 3339.
    pub not_after: String,
    /// The same, in seconds since the epoch.
    pub not_after_secs: Option<i64>,
}

/// The family [`Certs::expose`] writes.
pub const EXPIRY_FAMILY: &str = "fabric_tls_cert_not_after_timestamp_seconds";

/// A certificate this close to its end is warned about (`tls.expiring`).
pub const EXPIRY_WARNING_DAYS: i64 = 14;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_pem(path: &Path, knob: &'static str) -> Result<Vec<u8>, PairError> {
    let fail = |why: String| PairError { knob, why };
    let pem = crate::config::read_at_most(path, MAX_PEM_BYTES + 1)
        .map_err(|e| fail(format!("a readable file ({e})")))?;
    if pem.len() as u64 > MAX_PEM_BYTES {
        return Err(fail(format!("a PEM file under {MAX_PEM_BYTES} bytes")));
    }
    Ok(pem)
}

impl Pair {
    fn load(files: &Files) -> Result<Pair, PairError> {
        let cert_knob = "TLS_CERT_FILE";
        let key_knob = "TLS_KEY_FILE";
        let pem = read_pem(&files.cert, cert_knob)?;
        let chain = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PairError {
                knob: cert_knob,
                why: format!("PEM certificates ({e:?})"),
            })?;
        let Some(leaf) = chain.first() else {
            return Err(PairError {
                knob: cert_knob,
                why: "a PEM file with a CERTIFICATE in it".into(),
            });
        };
        // rustls checks the certificate itself (below); this is for the log.
        let about = about(leaf).unwrap_or_else(|| About {
            serial: "unknown".into(),
            not_after: "unknown".into(),
            not_after_secs: None,
        });
        let pem = Zeroed(read_pem(&files.key, key_knob)?);
        let key = PrivateKeyDer::from_pem_slice(&pem.0).map_err(|_| PairError {
            knob: key_knob,
            why: "an unencrypted PEM private key (PKCS#8, PKCS#1 or SEC1)".into(),
        })?;
        let key = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| PairError {
            knob: key_knob,
            why: match e {
                rustls::Error::InconsistentKeys(_) => {
                    "the private key of the certificate in TLS_CERT_FILE".into()
                }
                e => format!("a key rustls can use ({e})"),
            },
        })?;
        Ok(Pair {
            key: Arc::new(key),
            about,
        })
    }
}

/// The key file's bytes, overwritten with zeros when dropped (rustls
/// keeps its own copy of the key; this one need not linger on the heap).
struct Zeroed(Vec<u8>);

impl Drop for Zeroed {
    fn drop(&mut self) {
        for b in self.0.iter_mut() {
            // black_box: the writes must not be optimised away.
            *b = std::hint::black_box(0);
        }
        std::hint::black_box(&self.0);
    }
}

/// The certificate a listener serves, swappable while it runs.
pub struct Certs {
    files: Files,
    current: RwLock<Arc<Pair>>,
}

impl fmt::Debug for Certs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certs")
            .field("files", &self.files)
            .field("current", &self.about())
            .finish()
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pair().key.clone())
    }
}

impl Certs {
    fn pair(&self) -> Arc<Pair> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// What the current certificate is.
    pub fn about(&self) -> About {
        self.pair().about.clone()
    }

    /// Reads the files again; a good pair replaces the current one (for
    /// new connections), a bad one is refused and the current one stays.
    /// Logs `tls.reload` either way: INFO, or ERROR with the reason.
    pub fn reload(&self) -> Result<About, PairError> {
        let before = self.about();
        match Pair::load(&self.files) {
            Ok(pair) => {
                let about = pair.about.clone();
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(pair);
                Event::new(Level::Info, "tls.reload")
                    .str("serial", &about.serial)
                    .str("not_after", &about.not_after)
                    .str("previous_serial", &before.serial)
                    .emit();
                self.warn_if_expiring(clock::epoch_ms() / 1000);
                Ok(about)
            }
            Err(e) => {
                Event::new(Level::Error, "tls.reload")
                    .str("error", &e.to_string())
                    .str("kept_serial", &before.serial)
                    .str("kept_not_after", &before.not_after)
                    .emit();
                Err(e)
            }
        }
    }

    /// Logs a WARN when the certificate served has expired (`tls.expired`:
    /// clients will refuse it) or will within [`EXPIRY_WARNING_DAYS`]
    /// (`tls.expiring`). Called at start and after each reload.
    pub fn warn_if_expiring(&self, now_secs: u64) {
        let about = self.about();
        let Some(left) = about.not_after_secs.map(|end| end - now_secs as i64) else {
            return;
        };
        let event = if left <= 0 {
            Event::new(Level::Warn, "tls.expired")
        } else if left < EXPIRY_WARNING_DAYS * 86_400 {
            Event::new(Level::Warn, "tls.expiring").uint("days_left", (left / 86_400) as u64)
        } else {
            return;
        };
        event
            .str("serial", &about.serial)
            .str("not_after", &about.not_after)
            .emit();
    }

    /// `fabric_tls_cert_not_after_timestamp_seconds`: when the certificate
    /// served expires, labelled with its serial (both servers' `/metrics`;
    /// `FabricCertificateExpiresSoon` in deploy/prometheus/alerts.yml).
    pub fn expose(&self, exp: &mut Exposition) {
        let about = self.about();
        let Some(secs) = about.not_after_secs else {
            return;
        };
        exp.family(
            EXPIRY_FAMILY,
            "gauge",
            "When the TLS certificate served expires (Unix time); a SIGHUP rotation changes it.",
        )
        .sample(EXPIRY_FAMILY, &[("serial", &about.serial)], secs as f64);
    }

    /// The rustls configuration of a listener serving these certificates.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec(), b"http/1.0".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The serial number and expiry of a DER certificate, read with just
/// enough DER to reach them (rustls does not expose them).
fn about(der: &[u8]) -> Option<About> {
    let (0x30, cert, _) = tlv(der)? else {
        return None;
    };
    let (0x30, tbs, _) = tlv(cert)? else {
        return None;
    };
    let (mut tag, mut value, mut rest) = tlv(tbs)?;
    if tag == 0xa0 {
        // [0] EXPLICIT version
        (tag, value, rest) = tlv(rest)?;
    }
    if tag != 0x02 {
        return None;
    }
    let serial = hex_serial(value);
    let (_, _, rest) = tlv(rest)?; // signature algorithm
    let (_, _, rest) = tlv(rest)?; // issuer
    let (0x30, validity, _) = tlv(rest)? else {
        return None;
    };
    let (_, _, rest) = tlv(validity)?; // notBefore
    let (tag, time, _) = tlv(rest)?;
    let (not_after, not_after_secs) = asn1_time(tag, time)?;
    Some(About {
        serial,
        not_after,
        not_after_secs: Some(not_after_secs),
    })
}

/// One DER element: its tag, its contents and what follows it.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// An INTEGER's bytes as upper-case hex, without a leading zero byte.
fn hex_serial(bytes: &[u8]) -> String {
    let bytes = match bytes {
        [0, rest @ ..] if !rest.is_empty() => rest,
        b => b,
    };
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) as
/// RFC 3339, and as seconds since the epoch.
fn asn1_time(tag: u8, bytes: &[u8]) -> Option<(String, i64)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let digits = text.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let full = match (tag, digits.len()) {
        (0x17, 12) => {
            let yy: u32 = digits[..2].parse().ok()?;
            let century = if yy < 50 { "20" } else { "19" };
            format!("{century}{digits}")
        }
        (0x18, 14) => digits.to_string(),
        _ => return None,
    };
    let field = |range: std::ops::Range<usize>| full[range].parse::<u32>().ok();
    let (y, mo, d) = (field(0..4)?, field(4..6)?, field(6..8)?);
    let (h, mi, s) = (field(8..10)?, field(10..12)?, field(12..14)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = clock::days_from_civil(i64::from(y), mo, d);
    let secs = days * 86_400 + i64::from(h * 3600 + mi * 60 + s);
    let text = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z");
    Some((text, secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_elements_short_and_long_lengths() {
        assert_eq!(tlv(&[0x02, 1, 7, 9]), Some((0x02, &[7u8][..], &[9u8][..])));
        let mut long = vec![0x04, 0x81, 200];
        long.extend(std::iter::repeat_n(1u8, 200));
        let (tag, value, rest) = tlv(&long).unwrap();
        assert_eq!((tag, value.len(), rest.len()), (4, 200, 0));
        assert_eq!(tlv(&[0x04, 5, 1, 2]), None, "shorter than it says");
        assert_eq!(tlv(&[0x04, 0x85, 1, 1, 1, 1, 1]), None, "length of 5 bytes");
        assert_eq!(tlv(&[0x04]), None);
        assert_eq!(tlv(&[]), None);
    }

    #[test]
    fn serials_and_times() {
        assert_eq!(hex_serial(&[0x00, 0xab, 0x01]), "AB01");
        assert_eq!(hex_serial(&[0x00]), "00");
        assert_eq!(hex_serial(&[0x1f]), "1F");
        let text = |tag, b: &[u8]| asn1_time(tag, b).map(|(t, _)| t);
        assert_eq!(
            text(0x17, b"261202103000Z").as_deref(),
            Some("2026-12-02T10:30:00Z")
        );
        assert_eq!(
            text(0x17, b"991231235959Z").as_deref(),
            Some("1999-12-31T23:59:59Z")
        );
        assert_eq!(
            text(0x18, b"20510101000000Z").as_deref(),
            Some("2051-01-01T00:00:00Z")
        );
        // date -u -d 2026-12-02T10:30:00Z +%s
        assert_eq!(
            asn1_time(0x17, b"261202103000Z").map(|(_, s)| s),
            Some(1_796_207_400)
        );
        assert_eq!(asn1_time(0x17, b"700101000000Z").map(|(_, s)| s), Some(0));
        assert_eq!(asn1_time(0x17, b"261302103000Z"), None, "month 13");
        assert_eq!(asn1_time(0x17, b"261202253000Z"), None, "hour 25");
        assert_eq!(asn1_time(0x17, b"2612021030Z"), None);
        assert_eq!(asn1_time(0x17, b"26120210300aZ"), None);
        assert_eq!(asn1_time(0x18, b"261202103000Z"), None);
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert_eq!(about(b""), None);
        assert_eq!(about(&[0x30, 0x03, 0x30, 0x01, 0x02]), None);
        assert_eq!(about(&[0x30, 0x05, 0x30, 0x03, 0x04, 0x01, 0x00]), None);
    }
}
