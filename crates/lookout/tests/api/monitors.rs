//! Every kind of check against real targets on loopback: HTTP (keyword,
//! JSON, status, redirect), TCP, TLS (`openssl s_server` with certificates
//! expiring soon, expired and from a private CA), DNS (Debian's dnsmasq) and
//! ICMP (a ping from an unprivileged process in network namespaces of the
//! test's own), each OK, WARNING and FAILURE with the reason a person reads;
//! and conditions refused when saved.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::response::Redirect;
use axum::routing::get;
use axum::Router;
use lookout_testkit::{closed_port, spawn_hub, TestHub};
use serde_json::{json, Value};

use crate::library::TlsServer;

const SOON: Duration = Duration::from_secs(10);

/// The wall clock, as the hub reads it.
fn now() -> chrono::DateTime<chrono::Utc> {
    use lookout_hub::clock::Clock as _;
    lookout_hub::clock::SystemClock.now()
}

/// Creates a service and waits for its first check; the service then.
async fn checked(hub: &TestHub, body: Value) -> Value {
    let r = hub.post_json("/api/services", &body).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let s: Value = r.json().await.unwrap();
    hub.wait_for_service(s["id"].as_i64().unwrap(), SOON, |s| {
        !s["last_health_check"].is_null()
    })
    .await
}

fn state(s: &Value) -> (&str, &str) {
    (
        s["state"].as_str().unwrap(),
        s["state_reason"].as_str().unwrap(),
    )
}

/// A web app with a JSON health route whose answer the test flips, a page
/// with a word on it, and a redirect to that page.
async fn web_app(up: Arc<AtomicBool>) -> String {
    let app = Router::new()
        .route(
            "/health",
            get(move || {
                let up = up.load(Ordering::SeqCst);
                async move {
                    axum::Json(json!({
                        "status": if up { "UP" } else { "DOWN" },
                        "checks": [{"name": "db", "ok": up}],
                    }))
                }
            }),
        )
        .route(
            "/page",
            get(|| async { "<html><body>Welcome to the library</body></html>" }),
        )
        .route("/moved", get(|| async { Redirect::temporary("/page") }))
        .route(
            "/private",
            axum::routing::post(|headers: axum::http::HeaderMap, body: String| async move {
                let authorized = headers
                    .get("authorization")
                    .is_some_and(|v| v == "Bearer s3cret");
                if authorized && body == "{}" {
                    axum::http::StatusCode::NO_CONTENT
                } else {
                    axum::http::StatusCode::UNAUTHORIZED
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// A server on another port that counts the requests carrying `X-Api-Key`
/// and answers every request 200.
async fn elsewhere(keyed: Arc<std::sync::atomic::AtomicUsize>) -> String {
    let app = Router::new().route(
        "/landing",
        get(move |headers: axum::http::HeaderMap| {
            if headers.contains_key("x-api-key") {
                keyed.fetch_add(1, Ordering::SeqCst);
            }
            async { "landed" }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_credential_header_does_not_follow_a_redirect_to_another_origin() {
    let hub = spawn_hub().await;
    let keyed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let other = elsewhere(keyed.clone()).await;
    let target = format!("{other}/landing");
    let app = Router::new().route(
        "/away",
        get(move || {
            let target = target.clone();
            async move { Redirect::temporary(&target) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    // With a key-like header the check stops at the redirect (a 3xx passes
    // by default): the other origin never sees the key.
    let keyed_check = checked(
        &hub,
        json!({"name": "keyed", "base_url": format!("http://{addr}/away"),
               "http": {"headers": {"X-Api-Key": "k3y"}}}),
    )
    .await;
    assert_eq!(state(&keyed_check).0, "OK", "{keyed_check}");
    assert_eq!(
        keyed.load(Ordering::SeqCst),
        0,
        "the key went to another origin"
    );
    // Without one the redirect is followed to the other origin, as before.
    let plain = checked(
        &hub,
        json!({"name": "plain", "base_url": format!("http://{addr}/away"),
               "http": {"headers": {"X-Trace": "1"}, "accepted_codes": ["200"]}}),
    )
    .await;
    assert_eq!(state(&plain), ("OK", "health check passed"), "{plain}");
    // A condition on the status sees which answer was judged.
    let stopped = checked(
        &hub,
        json!({"name": "stopped", "base_url": format!("http://{addr}/away"),
               "http": {"headers": {"X-Api-Key": "k3y"}},
               "conditions": ["[STATUS] == 307"]}),
    )
    .await;
    assert_eq!(state(&stopped).0, "OK", "{stopped}");
    assert_eq!(keyed.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn http_checks_read_keywords_json_status_and_redirects() {
    let hub = spawn_hub().await;
    let up = Arc::new(AtomicBool::new(true));
    let app = web_app(up.clone()).await;

    // A JSON field, and a warning that does not fail the check.
    let json_check = checked(
        &hub,
        json!({"name": "api", "base_url": format!("{app}/health"),
               "conditions": ["[STATUS] == 200", "[BODY].status == UP",
                              "[BODY].checks[0].name == any(db, cache)",
                              {"expr": "[RESPONSE_TIME] < 0", "on_fail": "WARNING"}]}),
    )
    .await;
    assert_eq!(json_check["check_kind"], "http");
    let (status, why) = state(&json_check);
    assert_eq!(status, "WARNING", "{why}");
    assert!(
        why.starts_with("health check passed with a warning: [RESPONSE_TIME] < 0: was "),
        "{why}"
    );
    assert_eq!(
        json_check["conditions"][3],
        json!({"expr": "[RESPONSE_TIME] < 0", "on_fail": "WARNING"})
    );

    // The field goes DOWN: FAILURE, naming the condition and what was seen.
    up.store(false, Ordering::SeqCst);
    let id = json_check["id"].as_i64().unwrap();
    let r = hub.get(&format!("/api/services/{id}/health")).await;
    assert_eq!(r.status(), 200);
    let s = hub
        .wait_for_service(id, SOON, |s| s["state"] == "FAILURE")
        .await;
    assert_eq!(
        s["state_reason"],
        "health check failed: [BODY].status == UP: was DOWN"
    );

    // A word on a page: there, and not there.
    let page = checked(
        &hub,
        json!({"name": "page", "base_url": format!("{app}/page"),
               "conditions": ["[BODY] == pat(*the library*)"]}),
    )
    .await;
    assert_eq!(state(&page), ("OK", "health check passed"));
    let missing = checked(
        &hub,
        json!({"name": "page-word", "base_url": format!("{app}/page"),
               "conditions": ["[BODY] == pat(*the museum*)"]}),
    )
    .await;
    assert_eq!(
        state(&missing),
        (
            "FAILURE",
            "health check failed: [BODY] == pat(*the museum*): was <html><body>Welcome to the library</body></html>"
        )
    );

    // A redirect is followed by default; not followed, the 307 is the
    // answer, which the accepted codes decide on.
    let followed = checked(
        &hub,
        json!({"name": "moved", "base_url": format!("{app}/moved"),
               "conditions": ["[BODY] == pat(*library*)"]}),
    )
    .await;
    assert_eq!(state(&followed).0, "OK");
    let not_followed = checked(
        &hub,
        json!({"name": "moved-stay", "base_url": format!("{app}/moved"),
               "http": {"follow_redirects": false, "accepted_codes": ["200-299"]}}),
    )
    .await;
    assert_eq!(
        state(&not_followed),
        (
            "FAILURE",
            "health check failed: HTTP 307 Temporary Redirect (accepted: 200-299)"
        )
    );
    let redirect_ok = checked(
        &hub,
        json!({"name": "moved-ok", "base_url": format!("{app}/moved"),
               "http": {"follow_redirects": false},
               "conditions": ["[STATUS] == 307"]}),
    )
    .await;
    assert_eq!(state(&redirect_ok).0, "OK");

    // Method, headers and body are sent; a credential is not shown back,
    // and sending the hidden value back keeps it.
    let posted = checked(
        &hub,
        json!({"name": "post", "base_url": format!("{app}/private"),
               "http": {"method": "post", "headers": {"Authorization": "Bearer s3cret", "X-Trace": "1"}, "body": "{}"}}),
    )
    .await;
    assert_eq!(state(&posted), ("OK", "health check passed"));
    assert_eq!(posted["http"]["method"], "POST");
    assert_eq!(posted["http"]["headers"]["Authorization"], "********");
    assert_eq!(posted["http"]["headers"]["X-Trace"], "1");
    let mut back = posted["http"].clone();
    back["headers"]["X-Trace"] = json!("2");
    let pid = posted["id"].as_i64().unwrap();
    let r = hub
        .put_json(&format!("/api/services/{pid}"), &json!({"http": back}))
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let s = hub
        .wait_for_service(pid, SOON, |s| !s["last_health_check"].is_null())
        .await;
    assert_eq!(s["http"]["headers"]["X-Trace"], "2");
    assert_eq!(
        state(&s),
        ("OK", "health check passed"),
        "the credential was kept"
    );
    // A placeholder for a header never stored is dropped, not sent.
    let mut ghost = back.clone();
    ghost["headers"]["X-Secret-Token"] = json!("********");
    let r = hub
        .put_json(&format!("/api/services/{pid}"), &json!({"http": ghost}))
        .await;
    assert_eq!(r.status(), 200);
    let s: Value = r.json().await.unwrap();
    assert!(s["http"]["headers"].get("X-Secret-Token").is_none(), "{s}");
    assert_eq!(s["http"]["headers"]["Authorization"], "********");
    let s = hub
        .wait_for_service(pid, SOON, |s| !s["last_health_check"].is_null())
        .await;
    assert_eq!(state(&s).0, "OK");
    // Without it the route refuses.
    let r = hub
        .put_json(
            &format!("/api/services/{pid}"),
            &json!({"http": {"method": "POST", "body": "{}"}}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let s = hub
        .wait_for_service(pid, SOON, |s| !s["last_health_check"].is_null())
        .await;
    assert_eq!(
        state(&s),
        ("FAILURE", "health check failed: HTTP 401 Unauthorized")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn conditions_and_settings_are_checked_when_saved() {
    let hub = spawn_hub().await;
    let r = hub
        .post_json(
            "/api/services",
            &json!({"name": "bad", "base_url": "http://127.0.0.1:1",
                    "conditions": ["[STATUS] == 200", "[STATUSES] == 200", "[BODY].a[x] == 1"],
                    "http": {"method": "TRACE"}}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    let fields: Vec<&str> = body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["http", "conditions[1]", "conditions[2]"], "{body}");
    assert!(body["fields"][1]["message"]
        .as_str()
        .unwrap()
        .contains("[STATUSES] is not a placeholder"));
    for (bad, field) in [
        (json!({"name": "d", "base_url": "dns://127.0.0.1"}), "dns"),
        (
            json!({"name": "t", "base_url": "tcp://127.0.0.1"}),
            "base_url",
        ),
        (
            json!({"name": "h", "base_url": "tcp://127.0.0.1:5", "health_endpoint": "/x"}),
            "health_endpoint",
        ),
        (
            json!({"name": "c", "base_url": "http://h", "conditions": "x"}),
            "conditions",
        ),
        (
            json!({"name": "k", "base_url": "tls://h:1", "tls": {"ca_pem": "x"}}),
            "tls",
        ),
    ] {
        let r = hub.post_json("/api/services", &bad).await;
        assert_eq!(r.status(), 422, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["fields"][0]["field"], field, "{body}");
    }
    // Conditions are checked without saving anything, as the form does
    // while they are typed.
    let r = hub
        .post_json(
            "/api/conditions/check",
            &json!({"conditions": [" [STATUS] == 200", {"expr": "[BODY].ok == true for 5m", "on_fail": "WARNING"}]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"conditions": ["[STATUS] == 200", {"expr": "[BODY].ok == true for 5m", "on_fail": "WARNING"}]})
    );
    let r = hub
        .post_json(
            "/api/conditions/check",
            &json!({"conditions": ["[STATUS] == 200", "[BODY] =="], "name": "x"}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["fields"][0]["field"], "name");
    assert_eq!(body["fields"][0]["message"], "is not a known field");
    let r = hub
        .post_json(
            "/api/conditions/check",
            &json!({"conditions": ["[STATUS] == 200", "[BODY] =="]}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["fields"][0]["field"], "conditions[1]");
    assert_eq!(body["fields"][0]["message"], "has nothing right of ==");

    // The API's placeholder for a credential is not a value to send.
    let r = hub
        .post_json(
            "/api/services",
            &json!({"name": "copy", "base_url": "http://127.0.0.1:1",
                    "http": {"headers": {"Authorization": "********"}}}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["fields"][0]["field"], "http");
    assert!(body["fields"][0]["message"]
        .as_str()
        .unwrap()
        .contains("send the value itself"));

    // A change that would not fit what the service has is refused too.
    let s = hub
        .create_service(
            json!({"name": "web", "base_url": "http://127.0.0.1:1", "health_endpoint": "/h"}),
        )
        .await;
    let r = hub
        .put_json(
            &format!("/api/services/{}", s["id"]),
            &json!({"base_url": "tcp://127.0.0.1:1"}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["fields"][0]["field"], "health_endpoint");
    assert_eq!(
        hub.get_json("/api/services")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_checks_connect_and_fail_on_a_closed_port() {
    let hub = spawn_hub().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    let open = checked(
        &hub,
        json!({"name": "db", "base_url": format!("tcp://127.0.0.1:{port}")}),
    )
    .await;
    assert_eq!(open["check_kind"], "tcp");
    assert_eq!(open["port"], port);
    assert_eq!(state(&open), ("OK", "health check passed"));
    let slow = checked(
        &hub,
        json!({"name": "db-slow", "base_url": format!("tcp://127.0.0.1:{port}"),
               "conditions": [{"expr": "[RESPONSE_TIME] < 0", "on_fail": "WARNING"}]}),
    )
    .await;
    assert_eq!(state(&slow).0, "WARNING");
    let closed = closed_port();
    let down = checked(
        &hub,
        json!({"name": "gone", "base_url": format!("tcp://127.0.0.1:{closed}")}),
    )
    .await;
    assert_eq!(
        state(&down),
        (
            "FAILURE",
            format!(
                "health check failed: connection refused: nothing listens on 127.0.0.1:{closed}"
            )
            .as_str()
        )
    );
    // "This port must stay closed."
    let must_be_closed = checked(
        &hub,
        json!({"name": "closed", "base_url": format!("tcp://127.0.0.1:{closed}"),
               "conditions": ["[CONNECTED] == false"]}),
    )
    .await;
    assert_eq!(state(&must_be_closed).0, "OK");
}

/// A certificate for `localhost` and 127.0.0.1 valid from `from` to `to`
/// (days from today), signed by `ca` or by itself; its PEM files.
fn certificate(
    dir: &Path,
    name: &str,
    from: i64,
    to: i64,
    ca: Option<&rcgen::Issuer<'_, rcgen::KeyPair>>,
) -> (PathBuf, PathBuf) {
    use chrono::Datelike as _;
    let day = |n: i64| {
        let d = now() + chrono::Duration::days(n);
        rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8)
    };
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    params.not_before = day(from);
    params.not_after = day(to);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = match ca {
        Some(ca) => params.signed_by(&key, ca).unwrap(),
        None => params.self_signed(&key).unwrap(),
    };
    let (cert_file, key_file) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    (cert_file, key_file)
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_checks_see_expiry_and_trust() {
    let dir = tempfile::tempdir().unwrap();
    // A private CA, and certificates it signs.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Home CA");
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let ca = rcgen::Issuer::new(ca_params, ca_key);

    let good = certificate(dir.path(), "good", -1, 200, Some(&ca));
    let soon = certificate(dir.path(), "soon", -30, 5, Some(&ca));
    let expired = certificate(dir.path(), "expired", -60, -2, Some(&ca));
    let servers: Vec<TlsServer> = [&good, &soon, &expired]
        .iter()
        .map(|(c, k)| TlsServer::start(c, k))
        .collect();
    let url = |i: usize| format!("tls://localhost:{}", servers[i].port);
    let tls = json!({"ca_pem": ca_pem});

    let hub = spawn_hub().await;
    // Not trusted without its CA; trusted with it, and the expiry is kept.
    let untrusted = checked(&hub, json!({"name": "private", "base_url": url(0)})).await;
    assert_eq!(untrusted["check_kind"], "tls");
    assert_eq!(
        state(&untrusted),
        (
            "FAILURE",
            "health check failed: TLS error: the certificate is signed by an unknown authority"
        )
    );
    assert!(
        !untrusted["cert_expires_at"].is_null(),
        "a certificate that fails verification is recorded too"
    );
    let trusted = checked(
        &hub,
        json!({"name": "private-ca", "base_url": url(0), "tls": tls}),
    )
    .await;
    assert_eq!(state(&trusted), ("OK", "health check passed"));
    let expires: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(trusted["cert_expires_at"].clone()).unwrap();
    let days = (expires - now()).num_days();
    assert!((198..=200).contains(&days), "{days}");
    let skipped = checked(
        &hub,
        json!({"name": "skip", "base_url": url(0), "tls": {"skip_verify": true}}),
    )
    .await;
    assert_eq!(state(&skipped).0, "OK");

    // Expiring in 5 days: a warning, by default and by condition.
    let soon_check = checked(
        &hub,
        json!({"name": "soon", "base_url": url(1), "tls": tls}),
    )
    .await;
    let (status, why) = state(&soon_check);
    assert_eq!(status, "WARNING");
    assert!(
        why.starts_with("health check passed with a warning: the certificate expires in "),
        "{why}"
    );
    let by_condition = checked(
        &hub,
        json!({"name": "soon-cond", "base_url": url(1), "tls": tls,
               "conditions": [{"expr": "[CERTIFICATE_EXPIRATION] > 7d", "on_fail": "WARNING"},
                              "[CERTIFICATE_EXPIRATION] > 48h"]}),
    )
    .await;
    let (status, why) = state(&by_condition);
    assert_eq!(status, "WARNING");
    assert!(
        why.starts_with(
            "health check passed with a warning: [CERTIFICATE_EXPIRATION] > 7d: was 4d "
        ),
        "{why}"
    );

    // Expired: a failure, with its date recorded.
    let expired_check = checked(
        &hub,
        json!({"name": "expired", "base_url": url(2), "tls": tls}),
    )
    .await;
    assert_eq!(
        state(&expired_check),
        (
            "FAILURE",
            "health check failed: TLS error: the certificate has expired"
        )
    );
    let at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(expired_check["cert_expires_at"].clone()).unwrap();
    assert!(at < now());

    // HTTPS records the certificate as well (openssl's -www answers GET).
    let https = checked(
        &hub,
        json!({"name": "https", "base_url": format!("https://localhost:{}", servers[0].port), "tls": tls}),
    )
    .await;
    assert_eq!(state(&https), ("OK", "health check passed"));
    assert_eq!(https["cert_expires_at"], trusted["cert_expires_at"]);
    let https_untrusted = checked(
        &hub,
        json!({"name": "https-private", "base_url": format!("https://localhost:{}", servers[0].port)}),
    )
    .await;
    assert_eq!(
        state(&https_untrusted),
        (
            "FAILURE",
            "health check failed: TLS error: the certificate is signed by an unknown authority"
        )
    );
    assert_eq!(
        https_untrusted["cert_expires_at"],
        trusted["cert_expires_at"]
    );
}

/// Debian's dnsmasq on a loopback port, answering for `.test` itself.
struct Dnsmasq {
    child: Child,
    port: u16,
}

impl Dnsmasq {
    /// dnsmasq listens on TCP as well as UDP: a port free for UDP may be
    /// taken for TCP (by a server of another test), and dnsmasq then exits
    /// at once. It gets a port free for both, and another if it still exits.
    async fn start() -> Dnsmasq {
        for _ in 0..10 {
            let port = lookout_testkit::free_udp_port();
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
                continue;
            }
            let mut child = Command::new("/usr/sbin/dnsmasq")
                .args([
                    "--keep-in-foreground",
                    "--conf-file=/dev/null",
                    "--no-resolv",
                    "--no-hosts",
                    "--bind-interfaces",
                    "--listen-address=127.0.0.1",
                    "--pid-file=",
                    "--user=root",
                    "--local=/test/",
                    "--address=/web.test/10.1.2.3",
                ])
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("dnsmasq (scripts/test installs dnsmasq-base)");
            // It binds its sockets before anything else, or exits.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            if child.try_wait().expect("dnsmasq's status").is_none() {
                return Dnsmasq { child, port };
            }
        }
        panic!("dnsmasq did not start on any of ten free ports");
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dns_checks_ask_a_real_server() {
    let dns = Dnsmasq::start().await;
    let hub = spawn_hub().await;
    let url = format!("dns://127.0.0.1:{}", dns.port);
    // dnsmasq may take a moment to listen: the first check is retried by
    // waiting for an OK.
    let r = hub
        .post_json(
            "/api/services",
            &json!({"name": "web-name", "base_url": url, "check_interval_secs": 1,
                    "dns": {"name": "web.test", "type": "a"},
                    "conditions": ["[BODY] == 10.1.2.3"]}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let s: Value = r.json().await.unwrap();
    assert_eq!(s["check_kind"], "dns");
    assert_eq!(s["dns"], json!({"name": "web.test", "type": "A"}));
    let s = hub
        .wait_for_service(s["id"].as_i64().unwrap(), SOON, |s| s["state"] == "OK")
        .await;
    assert_eq!(s["state_reason"], "health check passed");

    let nx = checked(
        &hub,
        json!({"name": "nx", "base_url": url, "dns": {"name": "nothing.test"}}),
    )
    .await;
    assert_eq!(
        state(&nx),
        (
            "FAILURE",
            "health check failed: the DNS server answered NXDOMAIN"
        )
    );
    let wrong = checked(
        &hub,
        json!({"name": "moved", "base_url": url, "dns": {"name": "web.test"},
               "conditions": [{"expr": "[BODY] == 10.9.9.9", "on_fail": "WARNING"}, "[DNS_RCODE] == NOERROR"]}),
    )
    .await;
    assert_eq!(
        state(&wrong),
        (
            "WARNING",
            "health check passed with a warning: [BODY] == 10.9.9.9: was 10.1.2.3"
        )
    );
    let silent = checked(
        &hub,
        json!({"name": "silent", "base_url": format!("dns://127.0.0.1:{}", lookout_testkit::free_udp_port()),
               "check_timeout_ms": 500, "dns": {"name": "web.test"}}),
    )
    .await;
    assert_eq!(state(&silent).0, "FAILURE");
}

/// A network namespace of the test's own, with its loopback up; deleted on
/// drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("lookout-{tag}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        run(&["ip", "netns", "add", &name]);
        run(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        Netns(name)
    }

    /// `lookout probe ARGS` as user nobody in this namespace: its exit code
    /// and output line.
    fn probe_as_nobody(&self, binary: &Path, args: &[&str]) -> (i32, String) {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.0,
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
            ])
            .arg(binary)
            .arg("probe")
            .args(args)
            .output()
            .expect("ip netns exec");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn run(argv: &[&str]) {
    let status = Command::new(argv[0]).args(&argv[1..]).status().unwrap();
    assert!(status.success(), "{argv:?}");
}

#[test]
fn icmp_checks_ping_where_the_kernel_allows_it_and_say_why_not_elsewhere() {
    // The binary where user nobody can run it.
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("lookout");
    std::fs::copy(env!("CARGO_BIN_EXE_lookout"), &binary).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

    let allowed = Netns::new("ping-ok");
    run(&[
        "ip",
        "netns",
        "exec",
        &allowed.0,
        "sysctl",
        "-qw",
        "net.ipv4.ping_group_range=0 2147483647",
    ]);
    let (code, line) = allowed.probe_as_nobody(&binary, &["icmp://127.0.0.1"]);
    assert_eq!(code, 0, "{line}");
    assert!(line.starts_with("OK icmp://127.0.0.1 "), "{line}");
    let (code, line) = allowed.probe_as_nobody(
        &binary,
        &["icmp://127.0.0.1", "--warn", "[RESPONSE_TIME] < 0"],
    );
    assert_eq!(code, 1, "{line}");
    assert!(line.contains("[RESPONSE_TIME] < 0: was "), "{line}");
    // 192.0.2.1 (TEST-NET-1) has no route in the namespace.
    let (code, line) =
        allowed.probe_as_nobody(&binary, &["icmp://192.0.2.1", "--timeout", "500ms"]);
    assert_eq!(code, 2, "{line}");
    assert!(line.starts_with("FAILURE icmp://192.0.2.1"), "{line}");

    // A fresh namespace keeps the kernel's default range ("1 0": nobody).
    let refused = Netns::new("ping-no");
    let (code, line) = refused.probe_as_nobody(&binary, &["icmp://127.0.0.1"]);
    assert_eq!(code, 3, "{line}");
    assert_eq!(
        line,
        "UNKNOWN icmp://127.0.0.1: cannot ping: net.ipv4.ping_group_range is \"1 0\", which does not include this process's group 65534 (set it, e.g. sysctl -w net.ipv4.ping_group_range=\"0 2147483647\")"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_check_is_repeated_at_its_retry_interval_until_it_passes() {
    let hub = spawn_hub().await;
    let target = lookout_testkit::Target::start(503).await;
    let s = hub
        .create_service(json!({"name": "flaky", "base_url": target.url(),
                               "check_interval_secs": 3600, "retry_interval_secs": 1}))
        .await;
    assert_eq!(s["retry_interval_secs"], 1);
    let id = s["id"].as_i64().unwrap();
    // Failing: checked again every second, not every hour.
    let until = std::time::Instant::now() + SOON;
    while target.hits() < 3 {
        assert!(
            std::time::Instant::now() < until,
            "{} checks",
            target.hits()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(hub.service(id).await["state"], "FAILURE");
    // Passing again: back to its interval.
    target.set_status(200);
    hub.wait_for_service(id, SOON, |s| s["state"] == "OK").await;
    let hits = target.hits();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(target.hits(), hits, "no check within the hour's interval");
}
