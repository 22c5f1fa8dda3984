//! Single sign-on the way home servers do it: Debian's nginx on loopback,
//! with `auth_request` asking a small auth endpoint (this test's, standing
//! in for Authelia or Authentik) who the browser is, and passing
//! `Remote-User`, `Remote-Email` and `Remote-Groups` to the hub. The hub
//! believes them from the proxy's address only.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode as AxumStatus};
use lookout_hub::auth::AuthMode;
use lookout_hub::config::ForwardAuth;
use lookout_testkit::{free_port_in, spawn_hub_with, TestHub};
use reqwest::header::{COOKIE, LOCATION};
use serde_json::{json, Value};

use super::prometheus::KillOnDrop;

/// The auth endpoint: the `sso` cookie names the person (`alice` is in
/// `admins`, `bob` in nothing); no cookie, no sign-in.
async fn auth_endpoint() -> std::net::SocketAddr {
    let app = axum::Router::new().route(
        "/auth",
        axum::routing::get(|headers: HeaderMap| async move {
            let who = headers
                .get("cookie")
                .and_then(|v| v.to_str().ok())
                .and_then(|c| c.split(';').find_map(|p| p.trim().strip_prefix("sso=")))
                .map(str::to_owned);
            let mut response = axum::response::Response::new(axum::body::Body::empty());
            match who.as_deref() {
                Some(name @ ("alice" | "bob")) => {
                    let groups = if name == "alice" { "admins, media" } else { "" };
                    for (header, value) in [
                        ("remote-user", name.to_owned()),
                        ("remote-email", format!("{name}@home.lan")),
                        ("remote-groups", groups.to_owned()),
                    ] {
                        response
                            .headers_mut()
                            .insert(header, HeaderValue::from_str(&value).unwrap());
                    }
                }
                _ => *response.status_mut() = AxumStatus::UNAUTHORIZED,
            }
            response
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// nginx in front of `hub`, asking `auth` about every request; it connects
/// to the hub from 127.0.0.2, the one proxy the hub trusts.
fn nginx(
    dir: &std::path::Path,
    port: u16,
    hub: &TestHub,
    auth: std::net::SocketAddr,
) -> std::process::Child {
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\n\
             master_process off;\n\
             worker_processes 1;\n\
             pid {dir}/nginx.pid;\n\
             error_log {dir}/error.log warn;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n\
             \x20 access_log off;\n\
             \x20 client_body_temp_path {dir}/body;\n\
             \x20 proxy_temp_path {dir}/proxy;\n\
             \x20 fastcgi_temp_path {dir}/fastcgi;\n\
             \x20 uwsgi_temp_path {dir}/uwsgi;\n\
             \x20 scgi_temp_path {dir}/scgi;\n\
             \x20 server {{\n\
             \x20   listen 127.0.0.1:{port};\n\
             \x20   location = /_auth {{\n\
             \x20     internal;\n\
             \x20     proxy_pass http://{auth}/auth;\n\
             \x20     proxy_pass_request_body off;\n\
             \x20     proxy_set_header Content-Length \"\";\n\
             \x20   }}\n\
             \x20   location / {{\n\
             \x20     auth_request /_auth;\n\
             \x20     auth_request_set $user $upstream_http_remote_user;\n\
             \x20     auth_request_set $email $upstream_http_remote_email;\n\
             \x20     auth_request_set $groups $upstream_http_remote_groups;\n\
             \x20     proxy_set_header Remote-User $user;\n\
             \x20     proxy_set_header Remote-Email $email;\n\
             \x20     proxy_set_header Remote-Groups $groups;\n\
             \x20     proxy_set_header Host $http_host;\n\
             \x20     proxy_set_header X-Forwarded-For $remote_addr;\n\
             \x20     proxy_bind 127.0.0.2;\n\
             \x20     proxy_pass http://{hub};\n\
             \x20   }}\n\
             \x20 }}\n\
             }}\n",
            dir = dir.display(),
            hub = hub.addr,
        ),
    )
    .unwrap();
    std::process::Command::new("/usr/sbin/nginx")
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("Debian's nginx (scripts/test installs it)")
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_auth_through_nginx_signs_in_whom_the_proxy_names_and_nobody_else() {
    let hub = spawn_hub_with(|c| {
        c.auth.mode = AuthMode::Required;
        c.auth.trusted_proxies = lookout_hub::auth::client::parse_trusted("127.0.0.2").unwrap();
        c.auth.forward = Some(ForwardAuth {
            create_accounts: true,
            logout_url: Some("https://auth.home.lan/logout".into()),
            ..ForwardAuth::default()
        });
    })
    .await;
    let auth = auth_endpoint().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port_in(20000..30000);
    let mut proxy = nginx(dir.path(), port, &hub, auth);
    let _kill = KillOnDrop(&mut proxy);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let through = |path: &str, who: Option<&str>| {
        let mut r = client.get(format!("http://127.0.0.1:{port}{path}"));
        if let Some(who) = who {
            r = r.header(COOKIE, format!("sso={who}"));
        }
        r
    };
    // nginx is up when it answers.
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while through("/healthz", None).send().await.is_err() {
        assert!(tokio::time::Instant::now() < until, "nginx did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Nobody signed in at the proxy: the proxy refuses.
    assert_eq!(through("/", None).send().await.unwrap().status(), 401);

    // alice, in `admins`: an admin account, made on first sight.
    let me: Value = through("/api/v1/users/me", Some("alice"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (me["username"].as_str(), me["role"].as_str()),
        (Some("alice"), Some("admin")),
        "{me}"
    );
    let page = through("/", Some("alice")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(
        page.contains("id=\"account-link\""),
        "who is signed in is shown"
    );
    assert!(page.contains(">alice<"), "{page}");
    let r = through("/api/services", Some("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let created = client
        .post(format!("http://127.0.0.1:{port}/api/services"))
        .header(COOKIE, "sso=alice")
        .json(&json!({"name": "jellyfin", "port": 8096}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "an admin writes");

    // bob, in no admin group: a viewer.
    let r = client
        .post(format!("http://127.0.0.1:{port}/api/services"))
        .header(COOKIE, "sso=bob")
        .json(&json!({"name": "bob's", "port": 8097}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a viewer cannot write");
    let users: Value = through("/api/v1/users", Some("alice"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob"]);

    // The same header straight to the hub, from an address it does not
    // trust, is ignored.
    let r = client
        .get(hub.url("/api/v1/users/me"))
        .header("Remote-User", "alice")
        .header("Remote-Groups", "admins")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A proxy-made account has no password to sign in with.
    let r = hub
        .post_json(
            "/api/v1/users/login",
            &json!({"username": "alice", "password": lookout_hub::auth::FORWARDED_ONLY}),
        )
        .await;
    assert_eq!(r.status(), 401);

    // Log out goes on to the proxy's logout.
    let page = through("/account", Some("alice")).send().await.unwrap();
    let csrf = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("lookout_csrf="))
        .map(|c| c.split(';').next().unwrap().to_owned())
        .unwrap();
    let r = client
        .post(format!("http://127.0.0.1:{port}/logout"))
        .header(COOKIE, format!("sso=alice; lookout_csrf={csrf}"))
        .form(&[("_csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "https://auth.home.lan/logout");
}
