//! The probes: one per kind of target. Each reports what it saw
//! ([`Seen`]); [`super::judge`] turns that into a result with the
//! service's conditions.

use crate::sync::lock;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lookout_proto::monitor::{DnsQuery, TlsSettings};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Why a probe could not be made: its target's address, or its own
/// trust settings. Each message is the check's reason as the dashboard shows it.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot resolve host {host}: {source}")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot resolve host {host}: no address")]
    NoAddress { host: String },
    #[error("ca_pem: {0}")]
    CaPem(#[source] rustls::pki_types::pem::Error),
    #[error("ca_pem: not a CA certificate: {0}")]
    NotCa(#[source] rustls::Error),
    #[error("ca_pem holds no certificate")]
    NoCertificate,
    #[error("ca_pem: {0}")]
    CaBundle(#[source] reqwest::Error),
    #[error("HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// What one probe saw.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// A connection was made (TCP, TLS, HTTP), a ping answered, or a DNS
    /// server replied.
    pub connected: bool,
    /// Why not, when it was not.
    pub error: Option<String>,
    /// The probe cannot run here (not a failure of the target).
    pub cannot: Option<String>,
    pub status: Option<u16>,
    pub body: Option<String>,
    pub latency: Option<Duration>,
    pub certificate: Option<Certificate>,
    pub dns_rcode: Option<String>,
    pub ip: Option<IpAddr>,
    /// A host's figures (a `host://` check); a unit's come from its
    /// service's last sample.
    pub usage: Option<lookout_proto::condition::UsageSeen>,
}

/// The server's certificate as a TLS or HTTPS check saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Certificate {
    pub not_after: Option<DateTime<Utc>>,
    /// Why it failed verification, if it did.
    pub problem: Option<String>,
}

impl Seen {
    fn failed(error: impl ToString, started: Instant) -> Self {
        Seen {
            error: Some(error.to_string()),
            latency: Some(started.elapsed()),
            ..Seen::default()
        }
    }
}

/// What an exchange with `ip`, run under a timeout, saw: `seen` of its
/// answer (connected), why it failed, or `silent` when it timed out.
fn within<T, E: ToString>(
    outcome: Result<Result<T, E>, tokio::time::error::Elapsed>,
    ip: IpAddr,
    started: Instant,
    silent: impl FnOnce() -> String,
    seen: impl FnOnce(T) -> Seen,
) -> Seen {
    let failed = |why: String| Seen {
        ip: Some(ip),
        ..Seen::failed(why, started)
    };
    match outcome {
        Ok(Ok(answer)) => Seen {
            connected: true,
            latency: Some(started.elapsed()),
            ip: Some(ip),
            ..seen(answer)
        },
        Ok(Err(e)) => failed(e.to_string()),
        Err(_) => failed(silent()),
    }
}

/// The first address `host` resolves to.
pub async fn resolve(host: &str) -> Result<IpAddr, ProbeError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    let mut addrs =
        tokio::net::lookup_host((host, 0))
            .await
            .map_err(|source| ProbeError::Resolve {
                host: host.to_owned(),
                source,
            })?;
    addrs
        .next()
        .map(|a| a.ip())
        .ok_or_else(|| ProbeError::NoAddress {
            host: host.to_owned(),
        })
}

/// Connects to `host:port`.
pub async fn tcp(host: &str, port: u16, timeout: Duration) -> Seen {
    let started = Instant::now();
    let ip = match resolve(host).await {
        Ok(ip) => ip,
        Err(e) => return Seen::failed(e, started),
    };
    let connect = async {
        tokio::net::TcpStream::connect((ip, port))
            .await
            .map_err(|e| connect_reason(&e, host, port))
    };
    within(
        tokio::time::timeout(timeout, connect).await,
        ip,
        started,
        || format!("timed out after {}", super::human(timeout)),
        |_| Seen::default(),
    )
}

/// Why a connection to `address` (`host:port`) was refused, in words.
pub(super) fn refused(address: Option<&str>) -> String {
    match address {
        Some(a) => format!("connection refused: nothing listens on {a}"),
        None => "connection refused".into(),
    }
}

/// Why connecting to `host:port` failed.
fn connect_reason(e: &std::io::Error, host: &str, port: u16) -> String {
    if e.kind() != std::io::ErrorKind::ConnectionRefused {
        return io_reason(e);
    }
    let address = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    refused(Some(&address))
}

pub(super) fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::ConnectionReset => "connection reset by peer".into(),
        _ => e.to_string(),
    }
}

// ---- TLS ----------------------------------------------------------------------

/// The roots every TLS check trusts: the system's store, and the web's
/// roots for a system without one.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            let native = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
            Arc::new(roots)
        })
        .clone()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A verifier that verifies as rustls does and remembers the outcome and
/// the server's certificate, but lets the handshake finish either way: a
/// check only looks, it sends nothing over the connection.
#[derive(Debug)]
struct Recorder {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    seen: Mutex<(Option<Vec<u8>>, Option<String>)>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict =
            self.inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now);
        let mut seen = lock(&self.seen);
        seen.0 = Some(end_entity.to_vec());
        seen.1 = verdict.err().map(|e| certificate_problem(&e));
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Why a certificate failed verification, as a person reads it.
fn certificate_problem(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::Expired | C::ExpiredContext { .. } => "the certificate has expired".into(),
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "the certificate is not valid yet".into()
            }
            C::UnknownIssuer => "the certificate is signed by an unknown authority".into(),
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "the certificate is not valid for this host name".into()
            }
            C::Revoked => "the certificate has been revoked".into(),
            C::BadSignature => "the certificate's signature is bad".into(),
            other => format!("the certificate is not valid: {other:?}"),
        },
        other => format!("the certificate is not valid: {other}"),
    }
}

/// The roots for one service: the system's, plus its own CA.
pub fn roots_with(tls: Option<&TlsSettings>) -> Result<Arc<RootCertStore>, ProbeError> {
    let Some(pem) = tls.and_then(|t| t.ca_pem.as_deref()) else {
        return Ok(system_roots());
    };
    let mut roots = (*system_roots()).clone();
    let mut added = 0;
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(pem.as_bytes()) {
        let cert: CertificateDer<'static> = cert.map_err(ProbeError::CaPem)?;
        roots.add(cert).map_err(ProbeError::NotCa)?;
        added += 1;
    }
    if added == 0 {
        return Err(ProbeError::NoCertificate);
    }
    Ok(Arc::new(roots))
}

/// A TLS handshake with `host:port`: whether it was made, and the
/// server's certificate with the verdict on it.
pub async fn tls(host: &str, port: u16, settings: Option<&TlsSettings>, timeout: Duration) -> Seen {
    let started = Instant::now();
    let roots = match roots_with(settings) {
        Ok(r) => r,
        Err(e) => return Seen::failed(e, started),
    };
    let inner = match rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
    {
        Ok(v) => v,
        Err(e) => return Seen::failed(format!("TLS setup: {e}"), started),
    };
    let recorder = Arc::new(Recorder {
        inner,
        seen: Mutex::new((None, None)),
    });
    let config = match rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
    {
        Ok(b) => b
            .dangerous()
            .with_custom_certificate_verifier(recorder.clone())
            .with_no_client_auth(),
        Err(e) => return Seen::failed(format!("TLS setup: {e}"), started),
    };
    let Ok(name) = ServerName::try_from(host.to_owned()) else {
        return Seen::failed(format!("{host} is not a valid server name"), started);
    };
    let ip = match resolve(host).await {
        Ok(ip) => ip,
        Err(e) => return Seen::failed(e, started),
    };
    let handshake = async {
        let stream = tokio::net::TcpStream::connect((ip, port))
            .await
            .map_err(|e| connect_reason(&e, host, port))?;
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))
    };
    let outcome = tokio::time::timeout(timeout, handshake).await;
    let ip = Some(ip);
    let latency = Some(started.elapsed());
    let (der, problem) = {
        let seen = lock(&recorder.seen);
        seen.clone()
    };
    let certificate = der.map(|der| Certificate {
        not_after: not_after(&der),
        problem: problem.filter(|_| !settings.is_some_and(|s| s.skip_verify)),
    });
    match outcome {
        Ok(Ok(_)) => Seen {
            connected: true,
            latency,
            certificate,
            ip,
            ..Seen::default()
        },
        Ok(Err(e)) => Seen {
            error: Some(e),
            latency,
            certificate,
            ip,
            ..Seen::default()
        },
        Err(_) => Seen {
            error: Some(format!("timed out after {}", super::human(timeout))),
            latency,
            certificate,
            ip,
            ..Seen::default()
        },
    }
}

/// A certificate's `notAfter`.
pub fn not_after(der: &[u8]) -> Option<DateTime<Utc>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
}

// ---- DNS ----------------------------------------------------------------------

/// One query to the resolver at `host:port`, over UDP.
pub async fn dns(host: &str, port: u16, query: &DnsQuery, timeout: Duration) -> Seen {
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RecordType};

    let started = Instant::now();
    let ip = match resolve(host).await {
        Ok(ip) => ip,
        Err(e) => return Seen::failed(e, started),
    };
    let Ok(name) = Name::from_ascii(&query.name) else {
        return Seen::failed(format!("{} is not a domain name", query.name), started);
    };
    let Ok(record_type) = query.record_type.parse::<RecordType>() else {
        return Seen::failed(
            format!("{} is not a record type", query.record_type),
            started,
        );
    };
    let id: u16 = rand_id();
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(name, record_type));
    let Ok(bytes) = message.to_vec() else {
        return Seen::failed("the query could not be encoded", started);
    };
    let exchange = async {
        let bind: SocketAddr = if ip.is_ipv4() {
            (IpAddr::from([0, 0, 0, 0]), 0).into()
        } else {
            (IpAddr::from([0u16; 8]), 0).into()
        };
        let socket = tokio::net::UdpSocket::bind(bind)
            .await
            .map_err(|e| io_reason(&e))?;
        socket
            .connect((ip, port))
            .await
            .map_err(|e| io_reason(&e))?;
        socket.send(&bytes).await.map_err(|e| io_reason(&e))?;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = socket.recv(&mut buf).await.map_err(|e| io_reason(&e))?;
            if let Ok(answer) = Message::from_vec(&buf[..n]) {
                if answer.metadata.id == id {
                    return Ok::<_, String>(answer);
                }
            }
        }
    };
    within(
        tokio::time::timeout(timeout, exchange).await,
        ip,
        started,
        || {
            format!(
                "no answer from {host}:{port} within {}",
                super::human(timeout)
            )
        },
        |answer| {
            let body: Vec<String> = answer.answers.iter().map(|r| r.data.to_string()).collect();
            Seen {
                dns_rcode: Some(rcode_name(u16::from(answer.metadata.response_code))),
                body: Some(body.join("\n")),
                ..Seen::default()
            }
        },
    )
}

/// The names Gatus and `dig` give response codes.
fn rcode_name(code: u16) -> String {
    match code {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        n => format!("RCODE{n}"),
    }
}

fn rand_id() -> u16 {
    let mut b = [0u8; 2];
    // A predictable id only weakens spoofing protection of one check.
    let _ = getrandom::fill(&mut b);
    u16::from_ne_bytes(b)
}

// ---- ICMP ---------------------------------------------------------------------

/// The kernel setting that lets unprivileged processes ping.
pub const PING_SETTING: &str = "net.ipv4.ping_group_range";

/// One ping: an ICMP echo through a datagram socket, which needs no
/// privilege where `net.ipv4.ping_group_range` includes the process's group.
pub async fn icmp(host: &str, timeout: Duration) -> Seen {
    use socket2::{Domain, Protocol, Socket, Type};

    let started = Instant::now();
    let ip = match resolve(host).await {
        Ok(ip) => ip,
        Err(e) => return Seen::failed(e, started),
    };
    let (domain, protocol, request, reply) = match ip {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4, 8u8, 0u8),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6, 128u8, 129u8),
    };
    let socket = match Socket::new(domain, Type::DGRAM, Some(protocol)) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Seen {
                cannot: Some(ping_refused()),
                ..Seen::default()
            }
        }
        Err(e) => return Seen::failed(format!("cannot open an ICMP socket: {e}"), started),
    };
    let exchange = async {
        socket.set_nonblocking(true).map_err(|e| e.to_string())?;
        let socket = tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(socket))
            .map_err(|e| e.to_string())?;
        socket.connect((ip, 0)).await.map_err(|e| io_reason(&e))?;
        let sequence = rand_id();
        // Type, code, checksum (the kernel computes it), identifier (the
        // kernel sets the socket's), sequence, and a payload.
        let mut packet = vec![request, 0, 0, 0, 0, 0];
        packet.extend_from_slice(&sequence.to_be_bytes());
        packet.extend_from_slice(b"lookout ping");
        socket.send(&packet).await.map_err(|e| io_reason(&e))?;
        let mut buf = [0u8; 1500];
        loop {
            let n = socket.recv(&mut buf).await.map_err(|e| io_reason(&e))?;
            if n >= 8 && buf[0] == reply && buf[6..8] == sequence.to_be_bytes() {
                return Ok::<_, String>(());
            }
        }
    };
    within(
        tokio::time::timeout(timeout, exchange).await,
        ip,
        started,
        || format!("no reply within {}", super::human(timeout)),
        |()| Seen::default(),
    )
}

/// Why this process may not ping, naming the setting and its value.
fn ping_refused() -> String {
    use std::os::unix::fs::MetadataExt as _;
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")
        .map(|r| r.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unreadable".into());
    let gid = std::fs::metadata("/proc/self")
        .map(|m| m.gid().to_string())
        .unwrap_or_else(|_| "?".into());
    format!(
        "cannot ping: {PING_SETTING} is \"{range}\", which does not include this process's group {gid} (set it, e.g. sysctl -w {PING_SETTING}=\"0 2147483647\")"
    )
}
