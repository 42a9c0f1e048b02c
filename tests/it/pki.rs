//! Certificates made at test time with the `openssl` command: a private CA
//! and server certificates it signs, for 127.0.0.1 and localhost. Nothing
//! secret is committed; each `Pki` lives in its own temporary directory,
//! removed on drop.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A CA (its key and certificate) in a temporary directory.
pub struct Pki {
    pub dir: PathBuf,
    /// The CA's certificate (PEM): what clients trust.
    pub ca: PathBuf,
    ca_key: PathBuf,
}

/// A server certificate and its key, signed by a [`Pki`]'s CA.
#[derive(Clone)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pair {
    /// The environment that makes a server speak TLS with this pair.
    pub fn env(&self) -> [(&'static str, String); 2] {
        [
            ("TLS_CERT_FILE", self.cert.display().to_string()),
            ("TLS_KEY_FILE", self.key.display().to_string()),
        ]
    }

    /// The certificate's DER (what a client sees in the handshake).
    pub fn der(&self) -> Vec<u8> {
        let out = openssl(&["x509", "-in", path(&self.cert), "-outform", "DER"]);
        assert!(!out.is_empty(), "no DER from {}", self.cert.display());
        out
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// Runs `openssl args`, failing the test (with its stderr) if it fails;
/// returns its stdout.
fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl command (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Pki {
    /// A fresh CA named `name` (its subject's CN).
    pub fn new(name: &str) -> Pki {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ft-pki-{}-{}-{name}", std::process::id(), n));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        let ca_key = dir.join("ca.key");
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            path(&ca_key),
            "-out",
            path(&ca),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        Pki { dir, ca, ca_key }
    }

    /// A server certificate for 127.0.0.1, ::1 and localhost with this
    /// serial (hex), and its key, as `<name>.pem` and `<name>.key`.
    pub fn server(&self, name: &str, serial: &str) -> Pair {
        let key = self.dir.join(format!("{name}.key"));
        let csr = self.dir.join(format!("{name}.csr"));
        let cert = self.dir.join(format!("{name}.pem"));
        let ext = self.dir.join(format!("{name}.ext"));
        std::fs::write(
            &ext,
            "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\n\
             extendedKeyUsage=serverAuth\n\
             basicConstraints=critical,CA:FALSE\n",
        )
        .unwrap();
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            path(&key),
            "-out",
            path(&csr),
            "-subj",
            &format!("/CN={name}"),
        ]);
        self.sign(&csr, &ext, serial, &cert);
        Pair { cert, key }
    }

    /// An RSA server certificate (some producers still use RSA keys, in
    /// PKCS#1 or PKCS#8 files).
    pub fn server_rsa(&self, name: &str, serial: &str) -> Pair {
        let key = self.dir.join(format!("{name}.key"));
        openssl(&["genrsa", "-traditional", "-out", path(&key), "2048"]);
        let csr = self.dir.join(format!("{name}.csr"));
        let cert = self.dir.join(format!("{name}.pem"));
        let ext = self.dir.join(format!("{name}.ext"));
        std::fs::write(&ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
        openssl(&[
            "req",
            "-new",
            "-key",
            path(&key),
            "-out",
            path(&csr),
            "-subj",
            &format!("/CN={name}"),
        ]);
        self.sign(&csr, &ext, serial, &cert);
        Pair { cert, key }
    }

    /// Signs `csr` with the CA, with the extensions of `ext` and this
    /// serial (hex), into `cert`; valid for two days.
    fn sign(&self, csr: &Path, ext: &Path, serial: &str, cert: &Path) {
        openssl(&[
            "x509",
            "-req",
            "-in",
            path(csr),
            "-CA",
            path(&self.ca),
            "-CAkey",
            path(&self.ca_key),
            "-set_serial",
            &format!("0x{serial}"),
            "-days",
            "2",
            "-extfile",
            path(ext),
            "-out",
            path(cert),
        ]);
    }

    /// A file in this PKI's directory with these bytes.
    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A rustls client configuration trusting only `ca` (a PEM file).
pub fn client_config(ca: &Path) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Every connection a full handshake: a resumed session reports the
    // certificate of the session it resumed, not the one served now.
    config.resumption = rustls::client::Resumption::disabled();
    std::sync::Arc::new(config)
}

/// A TLS connection to `addr` (as 127.0.0.1), handshake done.
pub fn connect(
    addr: std::net::SocketAddr,
    config: &std::sync::Arc<rustls::ClientConfig>,
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>> {
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let conn = rustls::ClientConnection::new(config.clone(), name)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let sock = std::net::TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    sock.set_write_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// One request over a TLS connection with `Connection: close`: the status
/// and the body.
pub fn get(
    addr: std::net::SocketAddr,
    config: &std::sync::Arc<rustls::ClientConfig>,
    target: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut tls = connect(addr, config)?;
    let mut head = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    tls.write_all(head.as_bytes())?;
    tls.flush()?;
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        // A peer that closes without close_notify still gave us the answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // The body is chunked for big answers: tests that need those use curl.
    Ok((status, body.to_string()))
}
