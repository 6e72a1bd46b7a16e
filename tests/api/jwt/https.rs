//! A JWKS over `https://` (protocol §3.2, deploy/TLS.md): real TLS (rustls on ring) from a server inside the
//! test, with certificates of the dev CA of `deploy/services.sh` (`DUKASYNC_TEST_TLS_CA`, its key beside it).
//!
//! The server counts TLS handshakes and HTTP requests, so a refusal is seen to come from the certificate check
//! (a handshake, no request) and not from a server that was never reached; the dukasync server's log is read
//! through a subscriber of the test's own thread (`#[tokio::test]` runs every task on it).

use super::*;
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The dev CA's certificate (`deploy/services.sh start` makes it).
fn dev_ca() -> PathBuf {
    let ca = std::env::var("DUKASYNC_TEST_TLS_CA")
        .ok()
        .or_else(|| service_env().get("DUKASYNC_TEST_TLS_CA").cloned())
        .expect("no DUKASYNC_TEST_TLS_CA: run `deploy/services.sh start` (it makes the dev CA)");
    PathBuf::from(ca)
}

/// A server certificate and key signed by the dev CA, in a directory removed on drop.
struct Cert(PathBuf);

impl Cert {
    /// The services' own certificate, for 127.0.0.1 and localhost.
    fn services() -> (PathBuf, PathBuf) {
        let dir = dev_ca().parent().unwrap().to_path_buf();
        (dir.join("server.crt"), dir.join("server.key"))
    }

    /// A certificate of the dev CA for `name` only (not 127.0.0.1), made with the `openssl` CLI.
    fn for_name(name: &str) -> Cert {
        let dir = std::env::temp_dir().join(format!("dukasync-jwks-cert-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&dir).unwrap();
        let ca = dev_ca();
        std::fs::write(
            dir.join("ext"),
            format!("subjectAltName=DNS:{name}\nextendedKeyUsage=serverAuth\n"),
        )
        .unwrap();
        let run = |cmd: &mut Command| {
            let status = cmd
                .current_dir(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("openssl runs (deploy/services.sh installs it)");
            assert!(status.success(), "openssl failed: {cmd:?}");
        };
        run(Command::new("openssl")
            .args(["req", "-new", "-nodes", "-newkey", "ec"])
            .args([
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ]));
        run(Command::new("openssl")
            .args(["x509", "-req", "-in", "server.csr", "-CA"])
            .arg(&ca)
            .arg("-CAkey")
            .arg(ca.with_file_name("ca.key"))
            .args(["-CAcreateserial", "-CAserial", "ca.srl", "-days", "1"])
            .args(["-extfile", "ext", "-out", "server.crt"]));
        Cert(dir)
    }

    fn files(&self) -> (PathBuf, PathBuf) {
        (self.0.join("server.crt"), self.0.join("server.key"))
    }
}

impl Drop for Cert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A JWKS served over HTTPS on 127.0.0.1 with the given certificate: every connection answers one request, with
/// the document or (with `redirect_to`) a 302 to another URL.
struct HttpsJwks {
    url: String,
    handshakes: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl HttpsJwks {
    async fn start(cert: &Path, key: &Path, keys: &[&TestKey], redirect_to: Option<String>) -> HttpsJwks {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(key).expect("the server key is readable");
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let body = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string();
        let answer = match redirect_to {
            None => format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            ),
            Some(location) => format!(
                "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            ),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}/jwks.json", listener.local_addr().unwrap());
        let (handshakes, requests) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (shakes, served) = (handshakes.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                shakes.fetch_add(1, Ordering::SeqCst);
                let (acceptor, answer, served) = (acceptor.clone(), answer.clone(), served.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    served.fetch_add(1, Ordering::SeqCst);
                    let _ = tls.write_all(answer.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        HttpsJwks {
            url,
            handshakes,
            requests,
        }
    }
}

/// The dukasync server's log lines, written by a subscriber of the test's thread.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Log {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(self.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn lines(&self, containing: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains(containing))
            .map(String::from)
            .collect()
    }
}

impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Log {
    type Writer = Log;
    fn make_writer(&'a self) -> Log {
        self.clone()
    }
}

/// The server with `url` as its JWKS URL (and `ca` as DUKASYNC_JWT_JWKS_CA_FILE), the demo owner known as
/// `OWNER_SUB`; a failed fetch is retried only after a minute, so each test sees one fetch per refusal cause.
async fn app(url: &str, ca: Option<&Path>) -> Fixture {
    let mut vars = vec![
        ("DUKASYNC_JWT_JWKS_URL", url.to_string()),
        ("DUKASYNC_JWT_AUDIENCE", AUDIENCE.to_string()),
        ("DUKASYNC_JWT_JWKS_MIN_REFETCH_SECS", "60".to_string()),
    ];
    if let Some(ca) = ca {
        vars.push(("DUKASYNC_JWT_JWKS_CA_FILE", ca.display().to_string()));
    }
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = TestApp::start_with(&vars).await;
    know_owner_as_sub(&app).await;
    // `Fixture` (for jwt.rs' assertions) holds an http JWKS too; this one is never asked.
    let jwks = JwksServer::start(&[]).await;
    Fixture { app, jwks }
}

#[tokio::test]
async fn a_jwks_over_https_with_the_private_ca_is_accepted() {
    let (cert, key) = Cert::services();
    let server = HttpsJwks::start(&cert, &key, &[ed()], None).await;
    let f = app(&server.url, Some(&dev_ca())).await;
    let token = sign(ed(), &claims());
    assert_accepted_as_owner(&f, &token).await;
    let pull = f.app.get("/v1/scopes/water/changes?since=0", Some(&token)).await;
    assert_eq!(pull.status(), StatusCode::OK);
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn without_the_ca_file_the_bundled_roots_refuse_the_dev_ca_and_say_why_once() {
    let log = Log::default();
    let _guard = log.capture();
    let (cert, key) = Cert::services();
    let server = HttpsJwks::start(&cert, &key, &[ed()], None).await;
    let f = app(&server.url, None).await;
    let token = sign(ed(), &claims());
    assert_refused(&f, &token).await;
    assert_refused(&f, &token).await;
    // One handshake, refused by the client: no request got through, and it was not tried again.
    assert_eq!(server.handshakes.load(Ordering::SeqCst), 1);
    assert_eq!(server.requests.load(Ordering::SeqCst), 0);
    let failed = log.lines("jwks.refresh_failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].contains("invalid peer certificate: UnknownIssuer"),
        "{failed:?}"
    );
}

#[tokio::test]
async fn a_certificate_of_the_ca_for_another_name_is_refused() {
    let log = Log::default();
    let _guard = log.capture();
    let other = Cert::for_name("erp.example");
    let (cert, key) = other.files();
    let server = HttpsJwks::start(&cert, &key, &[ed()], None).await;
    let f = app(&server.url, Some(&dev_ca())).await;
    assert_refused(&f, &sign(ed(), &claims())).await;
    assert_eq!(server.handshakes.load(Ordering::SeqCst), 1);
    assert_eq!(server.requests.load(Ordering::SeqCst), 0);
    let failed = log.lines("jwks.refresh_failed");
    assert!(
        failed.len() == 1 && failed[0].contains("certificate not valid for name \"127.0.0.1\""),
        "{failed:?}"
    );
}

#[tokio::test]
async fn a_redirect_is_not_followed_so_https_never_becomes_http() {
    let log = Log::default();
    let _guard = log.capture();
    // The plain-http JWKS has the key: following the redirect would accept the token.
    let plain = JwksServer::start(&[ed()]).await;
    let (cert, key) = Cert::services();
    let server = HttpsJwks::start(&cert, &key, &[], Some(plain.url.clone())).await;
    let f = app(&server.url, Some(&dev_ca())).await;
    assert_refused(&f, &sign(ed(), &claims())).await;
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
    assert_eq!(plain.fetches.load(Ordering::SeqCst), 0);
    let failed = log.lines("jwks.refresh_failed");
    assert!(
        failed.len() == 1 && failed[0].contains("302 Found: redirects are not followed"),
        "{failed:?}"
    );
}

/// `dukasync serve` with `DUKASYNC_JWT_JWKS_CA_FILE` = `ca_file` must stop at start with one line naming it.
fn serve_fails_naming_the_ca_file(ca_file: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_dukasync"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DUKASYNC_DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .env("DUKASYNC_LISTEN", "127.0.0.1:0")
        .env("DUKASYNC_JWT_JWKS_URL", "https://erp.example/.well-known/jwks.json")
        .env("DUKASYNC_JWT_JWKS_CA_FILE", ca_file)
        .env("DUKASYNC_JWT_AUDIENCE", AUDIENCE)
        .stdin(Stdio::null())
        .output()
        .expect("binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("DUKASYNC_JWT_JWKS_CA_FILE"), "{stderr}");
    stderr
}

#[test]
fn a_missing_or_empty_ca_file_fails_the_start_naming_the_variable() {
    let stderr = serve_fails_naming_the_ca_file("/nonexistent/jwks-ca.pem");
    assert!(stderr.contains("/nonexistent/jwks-ca.pem cannot be read"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let empty = std::env::temp_dir().join(format!("dukasync-jwks-ca-{}", uuid::Uuid::new_v4()));
    std::fs::write(&empty, "").unwrap();
    let stderr = serve_fails_naming_the_ca_file(empty.to_str().unwrap());
    let _ = std::fs::remove_file(&empty);
    assert!(stderr.contains("holds no PEM certificate"), "{stderr}");
}
