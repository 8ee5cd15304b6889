//! A hostile HTTPS endpoint on loopback: what a tenant's own host can do to the operator when
//! it is named as the blob endpoint of a workload identity issuer (or as the Entra authority).
//! It speaks just enough HTTP/1.1 over TLS to be a credible endpoint, and misbehaves in one of
//! four ways ([`Mode`]): it records what it is sent, answers late, never answers, or streams
//! an endless body.
//!
//! Its certificate is issued for `127.0.0.1` by a throwaway CA (openssl, as hack/testenv.sh
//! makes the emulators'); an operator trusts it with `--extra-ca-file` [`Self::ca_cert_path`]
//! and may use it with `--allow-storage-endpoint` [`Self::host_port`].
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// How the endpoint treats a request, once its headers are read.
#[derive(Clone, Debug)]
pub enum Mode {
    /// Answers at once with a storage-shaped refusal (HTTP 403,
    /// `AuthorizationPermissionMismatch`); every request's headers are recorded.
    Capture,
    /// Answers like `Capture`, but only after this long.
    Slow(Duration),
    /// Reads the request and never answers (the connection stays open).
    Never,
    /// Answers `200 OK` with a body of this many bytes, streamed as fast as the client reads
    /// it: declared in `Content-Length`, or (`declared: false`) delimited by the connection's
    /// end, so that only reading it shows its size.
    Flood { bytes: u64, declared: bool },
}

/// One request as received: its request line and headers (names lower-cased).
#[derive(Clone, Debug)]
pub struct CapturedRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl CapturedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(found, _)| found.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

#[derive(Default)]
struct Record {
    connections: AtomicUsize,
    requests: Mutex<Vec<CapturedRequest>>,
    bytes_sent: AtomicU64,
}

/// The endpoint; stops serving when dropped.
pub struct HostileEndpoint {
    /// `127.0.0.1:<port>`, as `--allow-storage-endpoint` lists it.
    pub host_port: String,
    /// The CA (PEM) that issued its certificate, for `--extra-ca-file`.
    pub ca_cert_path: PathBuf,
    record: Arc<Record>,
    task: tokio::task::JoinHandle<()>,
}

impl HostileEndpoint {
    /// Starts serving on an ephemeral loopback port in `mode`.
    pub async fn start(mode: Mode) -> HostileEndpoint {
        let tls = tls_material();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the hostile endpoint");
        let host_port = listener.local_addr().unwrap().to_string();
        let record = Arc::new(Record::default());
        let acceptor = TlsAcceptor::from(tls.server_config.clone());
        let served = record.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                served.connections.fetch_add(1, Ordering::SeqCst);
                let (acceptor, record, mode) = (acceptor.clone(), served.clone(), mode.clone());
                tokio::spawn(async move {
                    if let Ok(stream) = acceptor.accept(socket).await {
                        serve_connection(stream, &mode, &record).await;
                    }
                });
            }
        });
        HostileEndpoint {
            host_port,
            ca_cert_path: tls.ca_cert_path.clone(),
            record,
            task,
        }
    }

    /// `https://127.0.0.1:<port>/<path>`: a blob endpoint or an authority host.
    pub fn url(&self, path: &str) -> String {
        format!(
            "https://{}/{}",
            self.host_port,
            path.trim_start_matches('/')
        )
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.record.connections.load(Ordering::SeqCst)
    }

    /// Every request whose headers were read, in order.
    pub fn requests(&self) -> Vec<CapturedRequest> {
        self.record.requests.lock().unwrap().clone()
    }

    /// Body bytes written to clients (a flood's progress: what the clients took).
    pub fn bytes_sent(&self) -> u64 {
        self.record.bytes_sent.load(Ordering::SeqCst)
    }
}

impl Drop for HostileEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A storage error body, as Get User Delegation Key refuses a caller without the role.
const REFUSAL: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthorizationPermissionMismatch</Code><Message>hostile endpoint</Message></Error>";
/// Headers of one request: more is a client the endpoint does not care to understand.
const MAX_HEAD: usize = 64 * 1024;

async fn serve_connection<S>(mut stream: S, mode: &Mode, record: &Record)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buffer = Vec::new();
    loop {
        let Some(request) = read_request(&mut stream, &mut buffer).await else {
            return;
        };
        record.requests.lock().unwrap().push(request);
        let answered = match mode {
            Mode::Capture => answer(&mut stream, 403, REFUSAL).await,
            Mode::Slow(delay) => {
                tokio::time::sleep(*delay).await;
                answer(&mut stream, 403, REFUSAL).await
            }
            Mode::Never => {
                // Keeps the connection open until the client gives up.
                let mut sink = [0u8; 1024];
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                return;
            }
            Mode::Flood { bytes, declared } => {
                flood(&mut stream, *bytes, *declared, record).await;
                // A body delimited by the connection's end ends it.
                return;
            }
        };
        if !answered {
            return;
        }
    }
}

/// Reads one request's head and skips its body (`Content-Length` only, as reqwest sends).
async fn read_request<S>(stream: &mut S, buffer: &mut Vec<u8>) -> Option<CapturedRequest>
where
    S: tokio::io::AsyncRead + Unpin,
{
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if buffer.len() > MAX_HEAD {
            return None;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    buffer.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let (method, path) = (
        request_line.next()?.to_string(),
        request_line.next()?.to_string(),
    );
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    while buffer.len() < length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    buffer.drain(..length);
    Some(CapturedRequest {
        method,
        path,
        headers,
    })
}

async fn answer<S>(stream: &mut S, status: u16, body: &str) -> bool
where
    S: tokio::io::AsyncWrite + Unpin,
{
    let response = format!(
        "HTTP/1.1 {status} Hostile\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await.is_ok() && stream.flush().await.is_ok()
}

/// `200 OK` and `bytes` of XML-looking filler, 64 KiB per write, until the client hangs up.
async fn flood<S>(stream: &mut S, bytes: u64, declared: bool, record: &Record) -> bool
where
    S: tokio::io::AsyncWrite + Unpin,
{
    let length = if declared {
        format!("Content-Length: {bytes}")
    } else {
        "Connection: close".to_string()
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\n{length}\r\n\r\n<UserDelegationKey><Value>"
    );
    if stream.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    let chunk = vec![b'A'; 64 * 1024];
    let mut left = bytes.saturating_sub(26);
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        if stream.write_all(&chunk[..n]).await.is_err() {
            return false;
        }
        record.bytes_sent.fetch_add(n as u64, Ordering::SeqCst);
        left -= n as u64;
    }
    stream.flush().await.is_ok() && stream.shutdown().await.is_ok()
}

struct TlsMaterial {
    ca_cert_path: PathBuf,
    server_config: Arc<rustls::ServerConfig>,
}

/// One CA and a `127.0.0.1` leaf per test binary, made by openssl in a temporary directory.
fn tls_material() -> &'static TlsMaterial {
    static MATERIAL: OnceLock<TlsMaterial> = OnceLock::new();
    MATERIAL.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("hostile-endpoint-")
            .tempdir()
            .expect("a directory for the hostile endpoint's certificates")
            .keep();
        let openssl = |args: &[&str]| {
            let status = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .stderr(Stdio::null())
                .status()
                .expect("run openssl");
            assert!(status.success(), "openssl {args:?} failed");
        };
        // As hack/testenv.sh's make_tls: rustls refuses a CA certificate as a server's.
        openssl(&[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=hostile-endpoint-ca", "-keyout", "ca.key", "-out", "ca.crt",
        ]);
        openssl(&[
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout",
            "server.key", "-out", "server.csr",
        ]);
        std::fs::write(
            dir.join("server.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .expect("write the leaf's extensions");
        openssl(&[
            "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "server.ext", "-out", "server.crt",
        ]);
        let read = |name: &str| std::fs::read(dir.join(name)).expect("read a generated PEM");
        let certificates: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(&read("server.crt"))
                .collect::<Result<_, _>>()
                .expect("the leaf certificate");
        let key = PrivateKeyDer::from_pem_slice(&read("server.key")).expect("the leaf's key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server_config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(certificates, key)
            .expect("the hostile endpoint's TLS configuration");
        TlsMaterial {
            ca_cert_path: dir.join("ca.crt"),
            server_config: Arc::new(server_config),
        }
    })
}
