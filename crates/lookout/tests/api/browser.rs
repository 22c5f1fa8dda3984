//! The dashboard in headless Chromium: add a service through the form, watch its
//! health appear, edit it, watch it go down without a reload, delete it.

use std::time::Duration;

use fantoccini::{Client, Locator};
use lookout_testkit::{spawn_hub, Browser, Target};

const DEADLINE: Duration = Duration::from_secs(10);

/// Polls the text of `css` until `pred` holds.
pub(crate) async fn wait_text(client: &Client, css: &str, pred: impl Fn(&str) -> bool) -> String {
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let text = match client.find(Locator::Css(css)).await {
            Ok(el) => el.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if pred(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "{css}: text stayed {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn fill(client: &Client, id: &str, value: &str) {
    let input = client.find(Locator::Id(id)).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(value).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn add_see_edit_and_delete_a_service_in_chromium() {
    let hub = spawn_hub().await;
    let target = Target::start(200).await;
    let browser = Browser::start().await;
    let c = &browser.client;

    c.goto(&hub.url("/")).await.unwrap();
    assert!(
        c.find(Locator::Css(".empty")).await.is_ok(),
        "empty state first"
    );
    c.find(Locator::Id("add-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait().for_element(Locator::Id("name")).await.unwrap();

    // A mistake first: the message shows next to the field, the input stays.
    fill(c, "name", "browser-svc").await;
    fill(c, "base_url", "http://not a url").await;
    c.find(Locator::Id("save"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let error = wait_text(c, "#base_url-error", |t| !t.is_empty()).await;
    assert!(error.contains("a host name cannot have"), "{error}");
    let kept = c
        .find(Locator::Id("name"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("browser-svc"));

    fill(c, "base_url", &target.url()).await;
    fill(c, "description", "Added from Chromium").await;
    fill(c, "health_endpoint", "/health").await;
    fill(c, "check_interval_secs", "1").await;
    c.find(Locator::Id("save"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    let row = r#"tr[data-name="browser-svc"]"#;
    wait_text(c, &format!("{row} .label"), |t| t == "OK").await;
    wait_text(c, &format!("{row} .description"), |t| {
        t == "Added from Chromium"
    })
    .await;
    assert_eq!(wait_text(c, "#count-ok", |t| t == "1").await, "1");

    // Edit, from the service's page (its name leads there).
    c.find(Locator::Css(&format!("{row} td.name > a")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    click(c, "edit").await;
    c.wait()
        .for_element(Locator::Id("description"))
        .await
        .unwrap();
    fill(c, "description", "Edited in Chromium").await;
    c.find(Locator::Id("save"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(c, &format!("{row} .description"), |t| {
        t == "Edited in Chromium"
    })
    .await;

    // The target goes down: the row changes in place, no reload.
    c.execute("window.__marker = 'same page'", vec![])
        .await
        .unwrap();
    target.set_status(500);
    wait_text(c, &format!("{row} .label"), |t| t == "Failure").await;
    wait_text(c, "#count-failure", |t| t == "1").await;
    let marker = c.execute("return window.__marker", vec![]).await.unwrap();
    assert_eq!(marker, "same page", "the page was reloaded");

    // Delete, from its page, confirming the dialog.
    c.find(Locator::Css(&format!("{row} td.name > a")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    click(c, "delete").await;
    c.accept_alert().await.unwrap();
    wait_path(c, |p| p == "/?notice=deleted").await;
    let until = tokio::time::Instant::now() + DEADLINE;
    while c.find(Locator::Css(row)).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < until,
            "row still there after delete"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(hub.get_json("/api/services").await, serde_json::json!([]));
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_fits_a_phone_screen() {
    let hub = spawn_hub().await;
    hub.create_service(
        serde_json::json!({"name": "a-service-with-a-long-name", "base_url": "http://127.0.0.1:9",
                                          "description": "Something that runs on the home server"}),
    )
    .await;
    let browser = Browser::start().await;
    let c = &browser.client;
    c.set_window_size(390, 844).await.unwrap();
    c.goto(&hub.url("/")).await.unwrap();
    assert_no_sideways_scroll(c).await;
    browser.close().await;
}

/// The page fits the window's width: nothing scrolls sideways.
pub(crate) async fn assert_no_sideways_scroll(client: &Client) {
    let overflow = client
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "page scrolls sideways: {overflow}"
    );
}

async fn click(client: &Client, id: &str) {
    client
        .find(Locator::Id(id))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Waits until the browser is on `path` (and its query, if any).
async fn wait_path(client: &Client, pred: impl Fn(&str) -> bool) -> String {
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let url = client.current_url().await.unwrap();
        let here = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        if pred(&here) {
            return here;
        }
        assert!(tokio::time::Instant::now() < until, "still on {here}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn first_run_creates_the_admin_then_logout_and_login_in_chromium() {
    let hub = lookout_testkit::spawn_hub_with(|c| {
        c.auth.mode = lookout_hub::auth::AuthMode::Required;
    })
    .await;
    let browser = Browser::start().await;
    let c = &browser.client;

    // A hub without accounts sends the first visitor to the setup page.
    c.goto(&hub.url("/")).await.unwrap();
    wait_path(c, |p| p == "/setup").await;
    fill(c, "username", "ada").await;
    fill(c, "password", super::auth::ADMIN_PASSWORD).await;
    fill(c, "confirm", "something else").await;
    click(c, "create-admin").await;
    let error = wait_text(c, "#confirm-error", |t| !t.is_empty()).await;
    assert!(error.contains("does not match"), "{error}");
    fill(c, "password", super::auth::ADMIN_PASSWORD).await;
    fill(c, "confirm", super::auth::ADMIN_PASSWORD).await;
    click(c, "create-admin").await;
    wait_path(c, |p| p == "/").await;
    wait_text(c, "#account-link", |t| t == "ada").await;
    // The session cookie is out of JavaScript's reach.
    let visible = c.execute("return document.cookie", vec![]).await.unwrap();
    assert!(
        !visible.as_str().unwrap().contains("lookout_session"),
        "{visible}"
    );

    // The setup page is gone once an account exists.
    c.goto(&hub.url("/setup")).await.unwrap();
    wait_path(c, |p| p != "/setup").await;

    // Log out: back to the login page, and the dashboard is closed again.
    c.goto(&hub.url("/")).await.unwrap();
    click(c, "logout").await;
    wait_path(c, |p| p.starts_with("/login")).await;
    c.goto(&hub.url("/scan")).await.unwrap();
    let here = wait_path(c, |p| p.starts_with("/login")).await;
    assert_eq!(here, "/login?next=%2Fscan");

    // A wrong password is said so; the right one leads back to the page asked for.
    fill(c, "username", "ada").await;
    fill(c, "password", "not the password").await;
    click(c, "login").await;
    let error = wait_text(c, "#login-error", |t| !t.is_empty()).await;
    assert_eq!(error, "Wrong username or password.");
    fill(c, "password", super::auth::ADMIN_PASSWORD).await;
    click(c, "login").await;
    wait_path(c, |p| p == "/scan").await;
    wait_text(c, "#account-link", |t| t == "ada").await;

    // The account page makes a token for a host's heartbeat script.
    c.goto(&hub.url("/account")).await.unwrap();
    fill(c, "token-name", "nas heartbeat").await;
    c.find(Locator::Css("#token-role option[value=heartbeat]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    click(c, "create-token").await;
    let token = wait_text(c, "#new-token", |t| t.starts_with("lk")).await;
    let row = wait_text(c, "tr[data-token]", |t| t.contains("nas heartbeat")).await;
    assert!(row.contains("heartbeats only"), "{row}");
    let beat = |path: &str| hub.client.post(hub.url(path)).bearer_auth(&token);
    let r = beat("/register")
        .json(&serde_json::json!({"name": "nas", "ip": "127.0.0.1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = beat("/api/services").send().await.unwrap();
    assert_eq!(r.status(), 403, "the heartbeat token can do nothing else");
    browser.close().await;
}

/// Saves what the browser shows as `target/screenshots/NAME.png`, for a
/// person to look at.
pub(crate) async fn screenshot(client: &Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = client.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// The page at `url` in dark mode, saved like [`screenshot`]'s (a second,
/// one-shot Chromium: the driven one cannot switch its colour scheme).
pub(crate) fn dark_screenshot(url: &str, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    let profile = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(lookout_testkit::browser::CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--force-dark-mode",
            "--hide-scrollbars",
            "--window-size=1280,1100",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!(
            "--screenshot={}",
            dir.join(format!("{name}.png")).display()
        ))
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_units_service_page_shows_it_and_starts_and_stops_it_in_chromium() {
    use lookout_testkit::{free_port_in, SystemdSandbox};
    let sb = SystemdSandbox::start();
    let port = free_port_in(3000..10000);
    sb.write_unit(
        "shop.service",
        &format!(
            "[Unit]\nDescription=The shop\n[Service]\nExecStart=/usr/bin/python3 -m http.server {port} --bind 127.0.0.1\n[Install]\nWantedBy=default.target\n"
        ),
    );
    sb.write_unit(
        "broken.service",
        "[Unit]\nDescription=Fails at once\n[Service]\nExecStart=/bin/false\n",
    );
    sb.daemon_reload();
    sb.systemctl_ok(&["start", "shop.service"]);
    let _ = sb.systemctl(&["start", "broken.service"]);
    sb.wait_for("broken.service", "ActiveState", "failed", DEADLINE);
    crate::systemd::wait_for_port(port);
    let hub = crate::systemd::hub_in_with(&sb, &[]);
    let found = crate::systemd::wait_for_unit(&hub, "shop.service").await;
    let pid = found["main_pid"].as_u64().unwrap();
    let shop = hub
        .create_service(serde_json::json!({"name": "shop.service",
            "base_url": format!("http://127.0.0.1:{port}"), "health_endpoint": "/"}))
        .await;
    let id = shop["id"].as_i64().unwrap();
    hub.wait_for_service(id, DEADLINE, |s| s["health_status"] == "healthy")
        .await;

    let browser = Browser::start().await;
    let c = &browser.client;
    c.goto(&hub.url(&format!("/services/{id}"))).await.unwrap();
    wait_text(c, "#unit-state", |t| {
        t.starts_with("active (running) since ")
    })
    .await;
    wait_text(c, "#unit-pid", |t| t == pid.to_string()).await;
    wait_text(c, "#unit-ports", |t| {
        t.contains(&format!("127.0.0.1:{port}"))
    })
    .await;
    wait_text(c, "#unit-restarts", |t| !t.is_empty()).await;
    // The health check's request, as the program logged it.
    wait_text(c, "#unit-log", |t| t.contains("\"GET / HTTP/1.1\" 200")).await;
    assert!(
        c.find(Locator::Id("unit-start")).await.is_err(),
        "running: no Start"
    );
    assert!(c.find(Locator::Id("unit-logs")).await.is_ok());
    screenshot(c, "unit-page-desktop").await;
    c.set_window_size(390, 844).await.unwrap();
    assert_no_sideways_scroll(c).await;
    screenshot(c, "unit-page-phone").await;
    // The systemd section's buttons and log, further down on a phone.
    c.execute(
        "document.querySelector('.unit-actions').scrollIntoView()",
        vec![],
    )
    .await
    .unwrap();
    screenshot(c, "unit-page-phone-systemd").await;
    c.set_window_size(1280, 900).await.unwrap();
    dark_screenshot(&hub.url(&format!("/services/{id}")), "unit-page-dark");

    // Stop from the page: back on it, stopped, with Start offered.
    click(c, "unit-stop").await;
    wait_path(c, |p| p == format!("/services/{id}")).await;
    wait_text(c, "#unit-state", |t| t.starts_with("inactive (dead)")).await;
    wait_text(c, "#unit-pid", |t| t == "none").await;
    assert!(
        c.find(Locator::Id("unit-stop")).await.is_err(),
        "stopped: no Stop"
    );
    click(c, "unit-start").await;
    wait_path(c, |p| p == format!("/services/{id}")).await;
    wait_text(c, "#unit-state", |t| t.starts_with("active (running)")).await;
    assert_eq!(sb.property("shop.service", "ActiveState"), "active");

    // The log is followed live: a request made now shows on the page.
    wait_text(c, "#unit-log-live", |t| t.contains("live")).await;
    // systemd says active before the server has bound its port: ask until
    // it answers.
    let until = tokio::time::Instant::now() + DEADLINE;
    while reqwest::get(format!("http://127.0.0.1:{port}/followed-live"))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < until,
            "the unit never listened"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_text(c, "#unit-log", |t| t.contains("GET /followed-live")).await;

    // Enabled from the page, it starts at boot; Disable is offered then.
    wait_text(c, "#unit-name", |t| t.contains("(disabled)")).await;
    click(c, "unit-enable").await;
    wait_path(c, |p| p == format!("/services/{id}")).await;
    wait_text(c, "#unit-name", |t| t.contains("(enabled)")).await;
    assert!(c.find(Locator::Id("unit-disable")).await.is_ok());
    assert_eq!(sb.property("shop.service", "UnitFileState"), "enabled");
    screenshot(c, "unit-page-enabled-desktop").await;

    // The dashboard: the unit nobody watches fails, with Watch beside it.
    c.goto(&hub.url("/")).await.unwrap();
    wait_text(c, r#".unwatched[data-unit="broken.service"]"#, |t| {
        t.contains("fails, and nobody watches it: the systemd unit failed: exit code 1")
    })
    .await;
    screenshot(c, "dashboard-unwatched-unit").await;
    dark_screenshot(&hub.url("/"), "dashboard-unwatched-unit-dark");
    // The scan page (its count is its list's) and the form with the start
    // period, for a person to look at.
    for (path, name) in [
        ("/scan".to_owned(), "scan"),
        (format!("/services/{id}/edit"), "service-form"),
    ] {
        c.goto(&hub.url(&path)).await.unwrap();
        screenshot(c, &format!("{name}-desktop")).await;
        c.set_window_size(390, 844).await.unwrap();
        assert_no_sideways_scroll(c).await;
        screenshot(c, &format!("{name}-phone")).await;
        c.set_window_size(1280, 900).await.unwrap();
        dark_screenshot(&hub.url(&path), &format!("{name}-dark"));
    }
    browser.close().await;
}

/// Whether the element `id` is shown.
async fn shown(c: &Client, id: &str) -> bool {
    c.find(Locator::Id(id))
        .await
        .unwrap()
        .is_displayed()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tcp_check_and_a_json_condition_are_added_from_the_form_in_chromium() {
    let hub = spawn_hub().await;
    // A database's port, and a web API with a JSON health route.
    let db = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let db_port = db.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = db.accept().await {
            drop(socket);
        }
    });
    let app = axum::Router::new().route(
        "/health",
        axum::routing::get(|| async { axum::Json(serde_json::json!({"status": "UP"})) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}/health", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let browser = Browser::start().await;
    let c = &browser.client;

    // A TCP check: the kind picked, the fields of HTTP hidden, the address
    // typed without a scheme.
    c.goto(&hub.url("/services/new")).await.unwrap();
    assert!(shown(c, "field-health_endpoint").await);
    assert!(!shown(c, "field-dns_name").await);
    c.find(Locator::Id("check"))
        .await
        .unwrap()
        .select_by_value("tcp")
        .await
        .unwrap();
    assert!(!shown(c, "field-health_endpoint").await, "HTTP's fields go");
    let folded_method_hidden = c
        .find(Locator::Id("field-http_method"))
        .await
        .unwrap()
        .prop("hidden")
        .await
        .unwrap();
    assert_eq!(folded_method_hidden.as_deref(), Some("true"));
    assert!(shown(c, "field-conditions").await);
    let placeholder = c
        .find(Locator::Id("base_url"))
        .await
        .unwrap()
        .attr("placeholder")
        .await
        .unwrap();
    assert_eq!(placeholder.as_deref(), Some("tcp://192.168.1.10:5432"));
    fill(c, "name", "postgres").await;
    fill(c, "base_url", &format!("127.0.0.1:{db_port}")).await;
    fill(c, "check_interval_secs", "1").await;
    screenshot(c, "form-tcp-desktop").await;
    c.find(Locator::Id("save"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let row = r#"tr[data-name="postgres"]"#;
    wait_text(c, &format!("{row} .label"), |t| t == "OK").await;
    let services = hub.get_json("/api/services").await;
    assert_eq!(
        services[0]["base_url"],
        format!("tcp://127.0.0.1:{db_port}")
    );
    assert_eq!(services[0]["check_kind"], "tcp");

    // A JSON condition: a mistake first, shown at its line as it is typed,
    // and again when saved anyway, the input kept.
    c.goto(&hub.url("/services/new")).await.unwrap();
    fill(c, "name", "api").await;
    fill(c, "base_url", &api).await;
    fill(c, "conditions", "[STATUS] == 200\n[BODY].stauts = UP").await;
    let live = wait_text(c, "#conditions-error", |t| !t.is_empty()).await;
    assert!(live.starts_with("Line 2: has no operator"), "{live}");
    fill(c, "conditions", "[STATUS] == 200").await;
    wait_text(c, "#conditions-error", str::is_empty).await;
    // A blank line counts, as the box shows it.
    fill(c, "conditions", "[STATUS] == 200\n\n[BODY].stauts = UP").await;
    let live = wait_text(c, "#conditions-error", |t| !t.is_empty()).await;
    assert!(live.starts_with("Line 3: has no operator"), "{live}");
    c.find(Locator::Id("save"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let error = wait_text(c, "#conditions-error", |t| !t.is_empty()).await;
    assert!(error.starts_with("Line 3: has no operator"), "{error}");
    c.execute(
        "document.getElementById('conditions').scrollIntoView({block: 'center'})",
        vec![],
    )
    .await
    .unwrap();
    screenshot(c, "form-condition-error-desktop").await;
    c.set_window_size(390, 844).await.unwrap();
    assert_no_sideways_scroll(c).await;
    c.execute(
        "document.getElementById('conditions').scrollIntoView({block: 'center'})",
        vec![],
    )
    .await
    .unwrap();
    screenshot(c, "form-condition-error-phone").await;
    c.set_window_size(1280, 1000).await.unwrap();
    let kept = c
        .find(Locator::Id("conditions"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(
        kept.as_deref(),
        Some("[STATUS] == 200\n\n[BODY].stauts = UP")
    );
    fill(
        c,
        "conditions",
        "[STATUS] == 200\n[BODY].status == UP\nwarn: [RESPONSE_TIME] < 2000",
    )
    .await;
    fill(c, "check_interval_secs", "1").await;
    c.find(Locator::Id("save"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let row = r#"tr[data-name="api"]"#;
    wait_text(c, &format!("{row} .label"), |t| t == "OK").await;
    let s = hub
        .get_json("/api/services")
        .await
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "api")
        .cloned()
        .unwrap();
    assert_eq!(
        s["conditions"],
        serde_json::json!(["[STATUS] == 200", "[BODY].status == UP",
            {"expr": "[RESPONSE_TIME] < 2000", "on_fail": "WARNING"}])
    );

    // Its page says how it is checked.
    c.goto(&hub.url(&format!("/services/{}", s["id"])))
        .await
        .unwrap();
    let kind = wait_text(c, "#check-kind", |t| !t.is_empty()).await;
    assert_eq!(kind, "HTTP(S): a web page or API");
    let conditions = wait_text(c, "#check-conditions", |t| !t.is_empty()).await;
    assert!(
        conditions.contains("[BODY].status == UP") && conditions.contains("(warns)"),
        "{conditions}"
    );
    screenshot(c, "service-check-desktop").await;
    c.set_window_size(390, 844).await.unwrap();
    assert_no_sideways_scroll(c).await;
    screenshot(c, "service-check-phone").await;

    // Editing keeps what was set: the form shows the check as saved.
    c.goto(&hub.url(&format!("/services/{}/edit", s["id"])))
        .await
        .unwrap();
    let lines = c
        .find(Locator::Id("conditions"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(
        lines.as_deref(),
        Some("[STATUS] == 200\n[BODY].status == UP\nwarn: [RESPONSE_TIME] < 2000")
    );
    browser.close().await;
    dark_screenshot(&hub.url("/services/new"), "form-dark");
}

/// A push check made from the form: its whole URL shown once with a copy
/// button and examples, pinged as shown, and the service turns OK; its
/// page shows the ping, the edit form its timing, and a new URL retires
/// the old one.
#[tokio::test(flavor = "multi_thread")]
async fn a_push_check_made_from_the_form_turns_ok_when_pinged_in_chromium() {
    let hub = spawn_hub().await;
    let browser = Browser::start().await;
    let c = &browser.client;
    c.goto(&hub.url("/services/new")).await.unwrap();
    c.find(Locator::Id("check"))
        .await
        .unwrap()
        .select_by_value("push")
        .await
        .unwrap();
    assert!(
        !shown(c, "field-base_url").await,
        "a push check has no URL to check"
    );
    assert!(shown(c, "field-push_period").await);
    fill(c, "name", "nightly-backup").await;
    fill(c, "push_period", "1h").await;
    fill(c, "push_grace", "soon").await;
    click(c, "save").await;
    // A time the hub cannot read is named at its field; the rest is kept.
    let error = wait_text(c, "#push_grace-error", |t| !t.is_empty()).await;
    assert!(error.contains("is not a time"), "{error}");
    assert_eq!(hub.get_json("/api/services").await, serde_json::json!([]));
    fill(c, "push_grace", "10m").await;
    click(c, "save").await;

    let url = wait_text(c, "#push-url", |t| t.starts_with("http")).await;
    assert!(url.starts_with(&hub.url("/api/push/")), "{url}");
    assert!(
        shown(c, "push-copy").await,
        "the copy button shows with the script"
    );
    let cron = wait_text(c, "#push-example-cron", |t| !t.is_empty()).await;
    assert!(cron.ends_with(&url), "{cron}");
    screenshot(c, "push-url-desktop").await;
    c.set_window_size(390, 844).await.unwrap();
    assert_no_sideways_scroll(c).await;
    screenshot(c, "push-url-phone").await;
    c.set_window_size(1280, 1000).await.unwrap();

    // Pinged as the page shows: a run's start, then its end with its output.
    let http = reqwest::Client::new();
    let r = http.get(format!("{url}/start")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{url}/0"))
        .body("42 files copied")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    click(c, "push-done").await;
    wait_text(c, "#state-label", |t| t == "OK").await;
    let said = wait_text(c, "#push-said", |t| !t.is_empty()).await;
    assert_eq!(said, "OK · 42 files copied");
    let expected = wait_text(c, "#push-period", |t| !t.is_empty()).await;
    assert_eq!(expected, "every hour, 10 minutes of grace");
    assert!(shown(c, "push-took").await, "the run's time shows");
    screenshot(c, "push-service-desktop").await;
    let page = c.current_url().await.unwrap().to_string();
    c.set_window_size(390, 844).await.unwrap();
    assert_no_sideways_scroll(c).await;
    screenshot(c, "push-service-phone").await;
    c.set_window_size(1280, 1000).await.unwrap();
    dark_screenshot(&page, "push-service-dark");

    // The edit form knows it is a push check, with its timing.
    let id = hub.get_json("/api/services").await[0]["id"]
        .as_i64()
        .unwrap();
    c.goto(&hub.url(&format!("/services/{id}/edit")))
        .await
        .unwrap();
    let value = |id: &'static str| async move {
        c.find(Locator::Id(id))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default()
    };
    assert_eq!(value("check").await, "push");
    assert_eq!(value("push_period").await, "1h");
    fill(c, "push_period", "2h").await;
    // A cron schedule in a zone that does not exist: named on its field.
    fill(c, "push_schedule", "0 3 * * *").await;
    fill(c, "push_tz", "Europe/Atlantis").await;
    click(c, "save").await;
    let error = wait_text(c, "#push_tz-error", |t| !t.is_empty()).await;
    assert!(error.contains("is not a time zone"), "{error}");
    fill(c, "push_tz", "Europe/Berlin").await;
    click(c, "save").await;
    wait_path(c, |p| p == "/?notice=updated").await;
    let s = hub.service(id).await;
    assert_eq!(s["push"]["period_secs"], 7200);
    assert_eq!(
        (&s["push"]["schedule"], &s["push"]["tz"]),
        (
            &serde_json::json!("0 3 * * *"),
            &serde_json::json!("Europe/Berlin")
        )
    );
    c.goto(&page).await.unwrap();
    let expected = wait_text(c, "#push-period", |t| !t.is_empty()).await;
    assert_eq!(
        expected,
        "on the schedule 0 3 * * * (Europe/Berlin), 10 minutes of grace"
    );
    assert!(shown(c, "push-next").await, "the next run is shown");
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200, "editing keeps the URL");

    // A new URL: the old one stops working.
    c.goto(&page).await.unwrap();
    click(c, "push-new-url").await;
    c.accept_alert().await.unwrap();
    let new = wait_text(c, "#push-url", |t| t.starts_with("http")).await;
    assert_ne!(new, url);
    assert_eq!(http.get(&url).send().await.unwrap().status(), 404);
    assert_eq!(http.get(&new).send().await.unwrap().status(), 200);
    browser.close().await;
}

/// The dashboard puts failing services first and moves a service live when
/// it recovers; its counts and menus filter it by state and by tag, and group
/// it by tag; times are the reader's; on a phone each service is a compact
/// card.
#[tokio::test(flavor = "multi_thread")]
async fn failing_services_come_first_and_the_dashboard_filters_by_state_and_tag_in_chromium() {
    let hub = spawn_hub().await;
    let up = Target::start(200).await;
    let flaky = Target::start(500).await;
    for (name, target, tags) in [
        ("alpha", &up, serde_json::json!(["media"])),
        ("beta", &flaky, serde_json::json!(["media", "backup"])),
        ("gamma", &up, serde_json::json!([])),
    ] {
        hub.create_service(serde_json::json!({
            "name": name, "base_url": target.url(), "check_interval_secs": 1, "tags": tags,
        }))
        .await;
    }
    // A reader in Tokyo (UTC+9, no daylight saving).
    let browser = Browser::start_in_zone(Some("Asia/Tokyo")).await;
    let c = &browser.client;
    c.goto(&hub.url("/")).await.unwrap();
    let order = || async {
        c.execute(
            "return [...document.querySelectorAll('tr[data-id]')].map(r => r.dataset.name)",
            vec![],
        )
        .await
        .unwrap()
    };
    let until = tokio::time::Instant::now() + DEADLINE;
    while order().await != serde_json::json!(["beta", "alpha", "gamma"]) {
        assert!(tokio::time::Instant::now() < until, "{}", order().await);
        c.refresh().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_text(c, r#"tr[data-name="beta"] .label"#, |t| t == "Failure").await;
    screenshot(c, "dashboard-failing-first-desktop").await;
    // The last check's time is relative, with the absolute time in the
    // reader's zone on hover.
    let time = c
        .execute(
            "const t = document.querySelector('tr[data-name=\"beta\"] time.ago'); \
             return [t.textContent, t.title, t.getAttribute('datetime')]",
            vec![],
        )
        .await
        .unwrap();
    let [text, title, at] = [0, 1, 2].map(|i| time[i].as_str().unwrap().to_owned());
    assert!(text.ends_with(" s ago"), "{text}");
    let tokyo = chrono::DateTime::parse_from_rfc3339(&at)
        .unwrap()
        .naive_utc()
        + chrono::Duration::hours(9);
    assert!(
        title.starts_with(&tokyo.format("%Y-%m-%d %H:%M:%S").to_string()),
        "{title} is not {at} in Tokyo"
    );
    c.set_window_size(390, 844).await.unwrap();
    assert_no_sideways_scroll(c).await;
    // A card per service, name and status on one line: three fit in far
    // less than a phone's screen.
    let heights = c
        .execute(
            "return [...document.querySelectorAll('tr[data-id]')].map(r => r.getBoundingClientRect().height)",
            vec![],
        )
        .await
        .unwrap();
    for h in heights.as_array().unwrap() {
        assert!(h.as_f64().unwrap() < 130.0, "a card is {h} px high");
    }
    screenshot(c, "dashboard-failing-first-phone").await;
    c.set_window_size(1280, 1000).await.unwrap();

    // It recovers: the row moves to its place among the OK ones, live.
    c.execute("window.notReloaded = true", vec![])
        .await
        .unwrap();
    flaky.set_status(200);
    let until = tokio::time::Instant::now() + DEADLINE;
    while order().await != serde_json::json!(["alpha", "beta", "gamma"]) {
        assert!(tokio::time::Instant::now() < until, "{}", order().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let kept = c
        .execute("return window.notReloaded === true", vec![])
        .await
        .unwrap();
    assert_eq!(kept, serde_json::json!(true), "moved without a reload");
    // Its passing check joined its beat bar, live too.
    let last_beat = c
        .execute(
            "return [...document.querySelectorAll('tr[data-name=\"beta\"] svg.beats rect')].pop().getAttribute('class')",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(last_beat, "ok");
    wait_text(c, "#count-ok", |t| t == "3").await;

    // Counts are links: the failing ones alone (none now), then the OK ones.
    flaky.set_status(500);
    wait_text(c, "#count-failure", |t| t == "1").await;
    click(c, "show-failure").await;
    wait_path(c, |p| p == "/?state=FAILURE").await;
    assert_eq!(order().await, serde_json::json!(["beta"]));
    click(c, "show-ok").await;
    wait_path(c, |p| p == "/?state=OK").await;
    assert_eq!(order().await, serde_json::json!(["alpha", "gamma"]));

    // The tag menu applies as it changes; a row's tag is a link too.
    c.goto(&hub.url("/")).await.unwrap();
    c.find(Locator::Id("filter-tag"))
        .await
        .unwrap()
        .select_by_value("media")
        .await
        .unwrap();
    wait_path(c, |p| p.contains("tag=media")).await;
    assert_eq!(order().await, serde_json::json!(["beta", "alpha"]));
    screenshot(c, "dashboard-filtered-desktop").await;
    c.goto(&hub.url("/?tag=backup&q=BET")).await.unwrap();
    assert_eq!(order().await, serde_json::json!(["beta"]));

    // Grouped by tag: a section per tag, failing ones first, beta in both of
    // its tags, the untagged last; a recovery updates every copy live.
    c.goto(&hub.url("/")).await.unwrap();
    c.find(Locator::Id("filter-group"))
        .await
        .unwrap()
        .select_by_value("tag")
        .await
        .unwrap();
    wait_path(c, |p| p.contains("group=tag")).await;
    let sections = || async {
        c.execute(
            "return [...document.querySelectorAll('#services tbody')].map(b => \
               [b.dataset.tag, ...[...b.querySelectorAll('tr[data-id]')].map(r => r.dataset.name)])",
            vec![],
        )
        .await
        .unwrap()
    };
    assert_eq!(
        sections().await,
        serde_json::json!([
            ["backup", "beta"],
            ["media", "beta", "alpha"],
            ["", "gamma"]
        ])
    );
    let head = wait_text(c, "tbody[data-tag=\"media\"] .group-count", |t| {
        !t.is_empty()
    })
    .await;
    assert_eq!(head, "2 services · 1 failing");
    screenshot(c, "dashboard-grouped-desktop").await;
    flaky.set_status(200);
    wait_text(c, "tbody[data-tag=\"media\"] .group-count", |t| {
        t == "2 services"
    })
    .await;
    let labels = c
        .execute(
            "return [...document.querySelectorAll('tr[data-name=\"beta\"] .label')].map(l => l.textContent)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(labels, serde_json::json!(["OK", "OK"]));
    // Pages left behind let go of their event streams: after all these
    // pages, this one did not wait for a free connection (the browser's
    // six per host; it waited about a minute when cached pages kept theirs).
    let waited = c
        .execute(
            "const n = performance.getEntriesByType('navigation')[0]; return n.connectStart - n.fetchStart",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        waited.as_f64().unwrap() < 5_000.0,
        "waited {waited} ms for a connection"
    );
    c.goto(&hub.url("/?q=nothing-like-it")).await.unwrap();
    wait_text(c, "#no-match h1", |t| t == "No service matches").await;
    click(c, "filter-clear").await;
    wait_path(c, |p| p == "/").await;
    assert_eq!(order().await.as_array().unwrap().len(), 3);
    browser.close().await;
}

/// A service is muted, put in maintenance and paused from its page; the
/// dashboard shows it, the API has it, and each is undone the same way.
#[tokio::test(flavor = "multi_thread")]
async fn mute_and_maintenance_from_the_service_page_in_chromium() {
    let hub = spawn_hub().await;
    let id = hub
        .create_service(serde_json::json!({
            "name": "nas", "base_url": format!("http://127.0.0.1:{}", lookout_testkit::closed_port()),
        }))
        .await["id"]
        .as_i64()
        .unwrap();
    let browser = Browser::start_in_zone(Some("Asia/Tokyo")).await;
    let c = &browser.client;
    let page = hub.url(&format!("/services/{id}"));
    c.goto(&page).await.unwrap();
    let alerts = wait_text(c, "#alerts-state", |t| !t.is_empty()).await;
    assert!(alerts.starts_with("Alerts are on."), "{alerts}");

    click(c, "alerts-mute").await;
    wait_text(c, "#alerts-state", |t| t.starts_with("Muted")).await;
    assert_eq!(hub.service(id).await["muted"], true);
    c.goto(&hub.url("/")).await.unwrap();
    wait_text(c, r#"tr[data-name="nas"] .badge.quiet"#, |t| t == "muted").await;
    c.goto(&page).await.unwrap();
    click(c, "alerts-unmute").await;
    wait_text(c, "#alerts-state", |t| t.starts_with("Alerts are on")).await;
    assert_eq!(hub.service(id).await["muted"], false);

    c.find(Locator::Id("alerts-hours"))
        .await
        .unwrap()
        .select_by_value("4")
        .await
        .unwrap();
    click(c, "alerts-maintain").await;
    let state = wait_text(c, "#alerts-state", |t| t.starts_with("In maintenance")).await;
    assert!(state.contains("(in 4 h)"), "{state}");
    let until = hub.service(id).await["maintenance_until"].clone();
    assert!(until.is_string(), "{until}");
    screenshot(c, "service-maintenance-desktop").await;
    c.set_window_size(390, 844).await.unwrap();
    assert_no_sideways_scroll(c).await;
    screenshot(c, "service-maintenance-phone").await;
    c.set_window_size(1280, 1000).await.unwrap();
    dark_screenshot(&page, "service-maintenance-dark");
    c.goto(&hub.url("/")).await.unwrap();
    wait_text(c, r#"tr[data-name="nas"] .badge.quiet"#, |t| {
        t == "maintenance"
    })
    .await;
    c.goto(&page).await.unwrap();
    click(c, "alerts-end").await;
    wait_text(c, "#alerts-state", |t| t.starts_with("Alerts are on")).await;
    assert!(hub.service(id).await["maintenance_until"].is_null());

    // Planned ahead, at a time read in the reader's zone (Tokyo, UTC+9),
    // shown in it, then cancelled.
    let zone = c
        .find(Locator::Css(r#"#maintain-form input[name="tz"]"#))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(zone.as_deref(), Some("Asia/Tokyo"));
    c.execute(
        "document.getElementById('alerts-starts').value = arguments[0]",
        vec![serde_json::json!("2031-06-01T12:00")],
    )
    .await
    .unwrap();
    c.find(Locator::Id("alerts-hours"))
        .await
        .unwrap()
        .select_by_value("24")
        .await
        .unwrap();
    click(c, "alerts-maintain").await;
    let planned = wait_text(c, "#planned-state", |t| !t.is_empty()).await;
    assert!(
        planned.starts_with("Maintenance planned from 2031-06-01 12:00:00 GMT+9"),
        "{planned}"
    );
    let s = hub.service(id).await;
    assert_eq!(s["maintenance_from"], "2031-06-01T03:00:00Z");
    assert_eq!(s["maintenance_until"], "2031-06-02T03:00:00Z");
    wait_text(c, "#alerts-state", |t| t.starts_with("Alerts are on")).await;
    screenshot(c, "service-planned-desktop").await;
    click(c, "alerts-cancel").await;
    // The state read the same before the click: wait for the plan to go.
    let s = hub
        .wait_for_service(id, Duration::from_secs(10), |s| {
            s.get("maintenance_from").is_none()
        })
        .await;
    assert!(s["maintenance_until"].is_null(), "{s}");
    wait_text(c, "#alerts-state", |t| t.starts_with("Alerts are on")).await;
    c.set_window_size(390, 844).await.unwrap();
    assert_no_sideways_scroll(c).await;
    c.execute(
        "document.getElementById('alerts-state').scrollIntoView()",
        vec![],
    )
    .await
    .unwrap();
    screenshot(c, "service-alert-forms-phone").await;
    c.set_window_size(1280, 1000).await.unwrap();

    // A recurring window from the page: a mistake is named, then it is set
    // and shown with its next start, then removed.
    fill(c, "window_schedule", "0 3 * *").await;
    click(c, "window-save").await;
    let said = wait_text(c, "main p", |t| t.starts_with("Schedule:")).await;
    assert!(said.contains("has 4 fields"), "{said}");
    c.goto(&page).await.unwrap();
    fill(c, "window_schedule", "0 3 * * SUN").await;
    fill(c, "window_tz", "Europe/Berlin").await;
    c.find(Locator::Id("window_minutes"))
        .await
        .unwrap()
        .select_by_value("120")
        .await
        .unwrap();
    click(c, "window-save").await;
    let window = wait_text(c, "#window-state", |t| t.starts_with("Recurring")).await;
    assert!(
        window
            .starts_with("Recurring maintenance: from 0 3 * * SUN (Europe/Berlin), for 2 h; next "),
        "{window}"
    );
    assert_eq!(
        hub.service(id).await["maintenance_window"],
        serde_json::json!({"schedule": "0 3 * * SUN", "tz": "Europe/Berlin", "minutes": 120})
    );
    click(c, "window-remove").await;
    wait_text(c, "#window-state", |t| {
        t == "No recurring maintenance window."
    })
    .await;

    // Paused: not checked, UNKNOWN, marked on the dashboard; then resumed.
    click(c, "pause").await;
    wait_text(c, "#alerts-state", |t| t.starts_with("Paused")).await;
    assert_eq!(hub.service(id).await["state_reason"], "paused");
    c.goto(&hub.url("/")).await.unwrap();
    wait_text(c, r#"tr[data-name="nas"] .badge.quiet"#, |t| t == "paused").await;
    let detail = wait_text(c, r#"tr[data-name="nas"] .detail"#, |t| !t.is_empty()).await;
    assert_eq!(detail, "paused: not checked until resumed");
    c.goto(&page).await.unwrap();
    click(c, "resume").await;
    wait_text(c, "#alerts-state", |t| t.starts_with("Alerts are on")).await;
    assert_eq!(hub.service(id).await["paused"], false);
    browser.close().await;
}

/// An e-mail channel set up from the Notifications form (its fields shown
/// for the kind chosen) delivers its test to a real SMTP server, logged; a
/// mistake is named by field and the form keeps what was typed; the channel
/// is edited and switched off from the same form.
#[tokio::test(flavor = "multi_thread")]
async fn an_e_mail_channel_made_from_the_form_delivers_in_chromium() {
    let smtp = lookout_testkit::SmtpSink::start();
    let hub = spawn_hub().await;
    let browser = Browser::start().await;
    let c = &browser.client;
    c.goto(&hub.url("/notifications")).await.unwrap();
    c.find(Locator::Id("kind"))
        .await
        .unwrap()
        .select_by_value("email")
        .await
        .unwrap();
    assert!(shown(c, "field-host").await);
    assert!(shown(c, "field-from").await);
    assert!(!shown(c, "field-url").await, "e-mail has no URL");
    fill(c, "name", "mail").await;
    fill(c, "host", "127.0.0.1").await;
    fill(c, "port", &smtp.port.to_string()).await;
    c.find(Locator::Id("security"))
        .await
        .unwrap()
        .select_by_value("none")
        .await
        .unwrap();
    fill(c, "from", "lookout@home.example").await;
    click(c, "add-channel").await;
    // The recipient is missing: named, the rest kept.
    let error = wait_text(c, "#error", |t| !t.is_empty()).await;
    assert_eq!(error, "To: is required");
    let kept = c
        .find(Locator::Id("host"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("127.0.0.1"));
    assert!(shown(c, "field-to").await, "still an e-mail form");
    fill(c, "to", "me@home.example").await;
    screenshot(c, "notifications-email-desktop").await;
    click(c, "add-channel").await;
    wait_text(c, "tr[data-channel=\"mail\"] .name", |t| {
        t.starts_with("mail")
    })
    .await;
    c.find(Locator::Css("tr[data-channel=\"mail\"] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(c, "#notice", |t| t == "Test sent.").await;
    let until = tokio::time::Instant::now() + DEADLINE;
    while smtp.messages().is_empty() {
        assert!(tokio::time::Instant::now() < until, "no mail arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mail = &smtp.messages()[0];
    assert!(
        mail.contains("Subject: [lookout] lookout test notification"),
        "{mail}"
    );
    assert!(mail.contains("me@home.example"), "{mail}");
    // The delivery log has it.
    let logged = wait_text(c, "#deliveries tbody tr", |t| !t.is_empty()).await;
    assert!(
        logged.contains("mail") && logged.contains("test") && logged.contains("sent"),
        "{logged}"
    );
    c.set_window_size(390, 844).await.unwrap();
    assert_no_sideways_scroll(c).await;
    screenshot(c, "notifications-email-phone").await;
    c.set_window_size(1280, 1000).await.unwrap();

    // Edited: another recipient, and switched off; the form shows its
    // settings and the hub keeps the rest.
    let id = hub.get_json("/api/notifications/channels").await[0]["id"]
        .as_i64()
        .unwrap();
    click(c, &format!("edit-{id}")).await;
    wait_text(c, "#channel-form-title", |t| t == "Edit mail").await;
    let value = |id: &'static str| async move {
        c.find(Locator::Id(id))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default()
    };
    assert_eq!(value("to").await, "me@home.example");
    assert_eq!(value("port").await, smtp.port.to_string());
    fill(c, "to", "family@home.example").await;
    click(c, "enabled").await;
    screenshot(c, "notifications-edit-desktop").await;
    click(c, "save-channel").await;
    wait_text(c, "#notice", |t| t == "Channel saved.").await;
    assert!(shown(c, &format!("off-{id}")).await, "marked off");
    let channel = &hub.get_json("/api/notifications/channels").await[0];
    assert_eq!(channel["enabled"], false);
    assert_eq!(channel["config"]["to"], "family@home.example");
    assert_eq!(channel["config"]["host"], "127.0.0.1", "the rest kept");

    // A service chooses it in its form; its page says so.
    let service = hub
        .create_service(serde_json::json!({"name": "nas", "base_url": "http://127.0.0.1:9"}))
        .await["id"]
        .as_i64()
        .unwrap();
    c.goto(&hub.url(&format!("/services/{service}/edit")))
        .await
        .unwrap();
    c.execute(
        "document.querySelector('details.more-settings').open = true",
        vec![],
    )
    .await
    .unwrap();
    click(c, &format!("channel-{id}")).await;
    click(c, "save").await;
    wait_path(c, |p| p == "/?notice=updated").await;
    assert_eq!(
        hub.service(service).await["channels"],
        serde_json::json!([id])
    );
    c.goto(&hub.url(&format!("/services/{service}")))
        .await
        .unwrap();
    let through = wait_text(c, "#alerts-through", |t| !t.is_empty()).await;
    assert_eq!(through, "Notifies: mail · channels");
    browser.close().await;
}

/// A service's page charts its response time over a chosen range and lists
/// its incidents with their durations, on a desktop and on a phone.
#[tokio::test(flavor = "multi_thread")]
async fn the_service_page_charts_ranges_and_lists_incidents_in_chromium() {
    let hub = spawn_hub().await;
    let target = Target::start(500).await;
    let id = hub
        .create_service(serde_json::json!({
            "name": "jellyfin", "base_url": target.url(), "check_interval_secs": 1,
        }))
        .await["id"]
        .as_i64()
        .unwrap();
    let browser = Browser::start().await;
    let c = &browser.client;
    let page = hub.url(&format!("/services/{id}"));
    c.goto(&page).await.unwrap();
    // Failing: an ongoing incident. Then it recovers: the incident ends.
    let until = tokio::time::Instant::now() + DEADLINE;
    while !c
        .source()
        .await
        .unwrap()
        .contains("<strong>ongoing</strong>")
    {
        assert!(tokio::time::Instant::now() < until, "no ongoing incident");
        tokio::time::sleep(Duration::from_millis(200)).await;
        c.refresh().await.unwrap();
    }
    target.set_status(200);
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        c.refresh().await.unwrap();
        let lasted = c
            .execute(
                "const r = document.querySelector('#incidents tbody tr'); \
                 return r && !r.classList.contains('failed') ? r.cells[2].textContent : null",
                vec![],
            )
            .await
            .unwrap();
        if let Some(text) = lasted.as_str() {
            assert!(text.ends_with(" s"), "lasted {text}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "the incident did not end"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let summary = wait_text(c, "#chart-summary", |t| t.contains("checks passed")).await;
    assert!(
        !summary.starts_with("100 %"),
        "failed checks count: {summary}"
    );
    let failures = c
        .execute(
            "return document.querySelectorAll('svg.chart rect.fail').length",
            vec![],
        )
        .await
        .unwrap();
    assert!(failures.as_u64().unwrap() >= 1, "failed checks are marked");
    screenshot(c, "service-chart-desktop").await;
    // Another range, from its link.
    click(c, "range-1h").await;
    wait_path(c, |p| p.ends_with("?range=1h")).await;
    let ticks = c
        .execute(
            "return [...document.querySelectorAll('svg.chart text.axis')].map(t => t.textContent)",
            vec![],
        )
        .await
        .unwrap();
    let ticks: Vec<&str> = ticks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        ticks.contains(&"1 h ago") && ticks.contains(&"now"),
        "{ticks:?}"
    );
    assert!(
        ticks.iter().any(|t| t.ends_with(" ms")),
        "latency has units: {ticks:?}"
    );
    let here = c.current_url().await.unwrap().to_string();
    c.set_window_size(390, 844).await.unwrap();
    assert_no_sideways_scroll(c).await;
    screenshot(c, "service-chart-phone").await;
    c.set_window_size(1280, 1000).await.unwrap();
    dark_screenshot(&here, "service-chart-dark");
    browser.close().await;
}

/// The dashboard of 200 services (mixed states, tags) stays light: its page
/// and everything it loads come to under 200 KB as transferred (gzip), and
/// nothing is asked of another origin. (Its server time is measured by
/// `cargo bench -p lookout --bench dashboard`.)
#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_of_200_services_is_light_and_asks_no_other_origin_in_chromium() {
    let hub = spawn_hub().await;
    let up = Target::start(200).await;
    let down = Target::start(503).await;
    let closed = format!("http://127.0.0.1:{}", lookout_testkit::closed_port());
    let tags = ["media", "backup", "network", "home", "dev", "files"];
    for i in 0..200 {
        let url = match i % 10 {
            0 => closed.clone(),
            1 | 2 => down.url(),
            _ => up.url(),
        };
        hub.create_service(serde_json::json!({
            "name": format!("service-{i:03}"), "base_url": url,
            "description": format!("Service number {i} of the home lab"),
            "tags": [tags[i % tags.len()], tags[(i / 7) % tags.len()]],
        }))
        .await;
    }
    // Every one checked once.
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    while hub
        .get_json("/api/services")
        .await
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["last_health_check"].is_null())
    {
        assert!(tokio::time::Instant::now() < until, "not all checked");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let browser = Browser::start().await;
    let c = &browser.client;
    // What crosses the network is measured: the service worker, once it
    // runs, fetches pages itself and hands them over decompressed.
    for (command, params) in [
        ("Network.enable", serde_json::json!({})),
        (
            "Network.setBypassServiceWorker",
            serde_json::json!({"bypass": true}),
        ),
    ] {
        c.issue_cmd(DevTools(command, params)).await.unwrap();
    }
    for page in ["/", "/?group=tag"] {
        c.goto(&hub.url(page)).await.unwrap();
        wait_text(c, "#count-ok", |t| !t.is_empty()).await;
        let loaded = c
            .execute(
                "const all = [...performance.getEntriesByType('navigation'), \
                              ...performance.getEntriesByType('resource')]; \
                 return all.map(e => [e.name, e.transferSize, e.encodedBodySize, e.decodedBodySize])",
                vec![],
            )
            .await
            .unwrap();
        let origin = hub.url("");
        let mut transferred = 0;
        for entry in loaded.as_array().unwrap() {
            let name = entry[0].as_str().unwrap();
            assert!(name.starts_with(&origin), "{name} is not from the hub");
            let (encoded, decoded) = (entry[2].as_u64().unwrap(), entry[3].as_u64().unwrap());
            transferred += entry[1].as_u64().unwrap();
            if decoded > 10_000 {
                assert!(
                    encoded * 2 < decoded,
                    "{name} is not compressed: {encoded} of {decoded}"
                );
            }
        }
        assert!(
            transferred < 200_000,
            "{page}: {transferred} bytes transferred: {loaded}"
        );
        eprintln!("{page}: {transferred} bytes transferred for 200 services");
        let rows = c
            .execute(
                "return document.querySelectorAll('tr[data-id]').length",
                vec![],
            )
            .await
            .unwrap();
        assert!(rows.as_u64().unwrap() >= 200);
    }
    screenshot(c, "dashboard-200-grouped-desktop").await;
    browser.close().await;
}

/// The page as it stands, in the dark theme: the stylesheet's dark rules
/// applied whatever the browser prefers (pages behind a sign-in cannot be
/// opened by the one-shot Chromium of [`dark_screenshot`]), saved like
/// [`screenshot`]'s.
async fn dark_here(client: &Client, name: &str) {
    client
        .execute(
            "for (const sheet of document.styleSheets) for (const rule of sheet.cssRules) \
             if (rule.media && rule.media.mediaText.includes('prefers-color-scheme: dark')) \
             rule.media.mediaText = 'all';",
            vec![],
        )
        .await
        .unwrap();
    screenshot(client, name).await;
}

/// Desktop, phone and dark screenshots of the page as it stands.
async fn three_screenshots(client: &Client, name: &str) {
    screenshot(client, &format!("{name}-desktop")).await;
    client.set_window_size(390, 844).await.unwrap();
    assert_no_sideways_scroll(client).await;
    screenshot(client, &format!("{name}-phone")).await;
    client.set_window_size(1280, 900).await.unwrap();
    dark_here(client, &format!("{name}-dark")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_factor_sign_in_with_an_app_code_and_a_recovery_code_in_chromium() {
    use lookout_hub::clock::{Clock as _, ManualClock};
    let clock = ManualClock::new(chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap());
    let hub = lookout_testkit::spawn_hub_with_clock(
        |c| c.auth.mode = lookout_hub::auth::AuthMode::Required,
        clock.clone(),
    )
    .await;
    super::auth::add_user(&hub, "ada", super::auth::ADMIN_PASSWORD, true);
    let app = |secret: &str| {
        let now = u64::try_from(clock.now().timestamp()).unwrap();
        lookout_hub::auth::totp::code_at(secret, now).unwrap()
    };
    let browser = Browser::start().await;
    let c = &browser.client;
    let login_page = hub.url("/login");
    let sign_in = |password: &'static str| {
        let login_page = login_page.clone();
        async move {
            c.goto(&login_page).await.unwrap();
            fill(c, "username", "ada").await;
            fill(c, "password", password).await;
            click(c, "login").await;
        }
    };
    sign_in(super::auth::ADMIN_PASSWORD).await;
    wait_text(c, "#account-link", |t| t == "ada").await;

    // Set up from the account page: scan (here: read the key under the
    // QR code), then prove the app has it.
    c.goto(&hub.url("/account")).await.unwrap();
    wait_text(c, "#no-devices", |t| !t.is_empty()).await;
    three_screenshots(c, "account").await;
    click(c, "setup-2fa").await;
    wait_path(c, |p| p == "/account/two-factor").await;
    let secret = wait_text(c, "#totp-secret", |t| t.len() >= 32).await;
    assert!(secret.contains(' '), "the key in groups, to type: {secret}");
    let qr = c.find(Locator::Css("#qr svg")).await.unwrap();
    assert!(qr.is_displayed().await.unwrap());
    three_screenshots(c, "two-factor-setup").await;
    c.goto(&hub.url("/account/two-factor")).await.unwrap();
    // The page made a new key on reload: that one counts now.
    let secret_now = wait_text(c, "#totp-secret", |t| t.len() >= 32).await;
    assert_ne!(secret, secret_now, "each visit offers a new key");
    let secret = secret_now.replace(' ', "");
    fill(c, "code", "000000").await;
    click(c, "enable-2fa").await;
    wait_text(c, "#enrol-error", |t| t.contains("is not the app")).await;
    fill(c, "code", &app(&secret)).await;
    click(c, "enable-2fa").await;
    let codes = wait_text(c, "#recovery-codes", |t| !t.is_empty()).await;
    let codes: Vec<&str> = codes.split_whitespace().collect();
    assert_eq!(codes.len(), 10, "{codes:?}");
    three_screenshots(c, "two-factor-recovery-codes").await;
    c.goto(&hub.url("/account")).await.unwrap();
    let state = wait_text(c, "#two-factor-state", |t| t.starts_with("On.")).await;
    assert!(state.contains("10 recovery codes left"), "{state}");

    // Signing in now asks for the app's code after the password.
    click(c, "logout").await;
    wait_path(c, |p| p.starts_with("/login")).await;
    sign_in(super::auth::ADMIN_PASSWORD).await;
    wait_path(c, |p| p.starts_with("/login/code")).await;
    three_screenshots(c, "two-factor-code").await;
    fill(c, "code", "123456").await;
    click(c, "verify").await;
    let error = wait_text(c, "#code-error", |t| !t.is_empty()).await;
    assert!(error.contains("wrong or already used"), "{error}");
    clock.advance(Duration::from_secs(30));
    fill(c, "code", &app(&secret)).await;
    click(c, "verify").await;
    wait_path(c, |p| p == "/").await;
    wait_text(c, "#account-link", |t| t == "ada").await;

    // The phone is lost: a recovery code signs in, once.
    click(c, "logout").await;
    wait_path(c, |p| p.starts_with("/login")).await;
    sign_in(super::auth::ADMIN_PASSWORD).await;
    wait_path(c, |p| p.starts_with("/login/code")).await;
    fill(c, "code", codes[4]).await;
    click(c, "verify").await;
    wait_path(c, |p| p == "/").await;
    c.goto(&hub.url("/account")).await.unwrap();
    let state = wait_text(c, "#two-factor-state", |t| t.starts_with("On.")).await;
    assert!(state.contains("9 recovery codes left"), "{state}");
    three_screenshots(c, "account-two-factor-on").await;
    c.goto(&hub.url("/users")).await.unwrap();
    let row = wait_text(c, "tr[data-user=ada] td.two-factor", |t| !t.is_empty()).await;
    assert_eq!(row, "on");
    three_screenshots(c, "users-two-factor").await;
    click(c, "logout").await;
    wait_path(c, |p| p.starts_with("/login")).await;
    sign_in(super::auth::ADMIN_PASSWORD).await;
    wait_path(c, |p| p.starts_with("/login/code")).await;
    fill(c, "code", codes[4]).await;
    click(c, "verify").await;
    wait_text(c, "#code-error", |t| t.contains("already used")).await;
    browser.close().await;
}

/// A dependency and a healing rule set from the service form: a cycle is
/// refused under the field, and the page shows both, and the wait.
#[tokio::test(flavor = "multi_thread")]
async fn a_dependency_and_a_healing_rule_from_the_form_in_chromium() {
    let hub = spawn_hub().await;
    let target = Target::start(200).await;
    let mut ids = Vec::new();
    for name in ["db", "web"] {
        let s = hub
            .create_service(serde_json::json!({"name": name, "base_url": target.url(),
                "health_endpoint": format!("/{name}"), "check_interval_secs": 1}))
            .await;
        ids.push(s["id"].as_i64().unwrap());
    }
    let (db, web) = (ids[0], ids[1]);
    let browser = Browser::start().await;
    let c = &browser.client;
    let open_more = || async {
        c.execute(
            "document.querySelector('details.more-settings').open = true",
            vec![],
        )
        .await
        .unwrap();
    };

    c.goto(&hub.url(&format!("/services/{web}/edit")))
        .await
        .unwrap();
    open_more().await;
    click(c, &format!("depends-{db}")).await;
    fill(c, "heal_after", "2").await;
    fill(c, "heal_unit", "web.service").await;
    fill(c, "heal_max_per_hour", "1").await;
    click(c, "save").await;
    wait_path(c, |p| p == "/?notice=updated").await;
    let s = hub.service(web).await;
    assert_eq!(s["depends_on"], serde_json::json!([db]));
    assert_eq!(
        s["heal"],
        serde_json::json!({"after": 2, "action": "restart", "unit": "web.service", "max_per_hour": 1})
    );

    // The other way round would be a cycle: refused, said under the choice.
    c.goto(&hub.url(&format!("/services/{db}/edit")))
        .await
        .unwrap();
    open_more().await;
    click(c, &format!("depends-{web}")).await;
    click(c, "save").await;
    let said = wait_text(c, "#depends_on-error", |t| !t.is_empty()).await;
    assert_eq!(said, "Would make a cycle: db → web → db");
    assert!(
        hub.service(db).await.get("depends_on").is_none(),
        "nothing saved"
    );
    c.execute(
        "document.getElementById('field-depends_on').scrollIntoView()",
        vec![],
    )
    .await
    .unwrap();
    three_screenshots(c, "service-form-depends").await;

    // db fails: web waits on it; both pages say how they are related.
    target.set_status(503);
    hub.wait_for_service(web, DEADLINE, |s| s["state_reason"] == "waiting on db")
        .await;
    c.goto(&hub.url(&format!("/services/{web}"))).await.unwrap();
    let reason = wait_text(c, "#state-label", |t| !t.is_empty()).await;
    assert_eq!(reason, "Unknown");
    let depends = wait_text(c, "#depends-on", |t| !t.is_empty()).await;
    assert_eq!(depends, "db Failure");
    let rule = wait_text(c, "#heal-rule", |t| !t.is_empty()).await;
    assert_eq!(
        rule,
        "After 2 failed checks, restart web.service, at most 1 time an hour; then it alerts and stops trying until it recovers."
    );
    c.execute(
        "document.getElementById('dependencies-title').scrollIntoView()",
        vec![],
    )
    .await
    .unwrap();
    three_screenshots(c, "service-dependencies").await;
    c.goto(&hub.url(&format!("/services/{db}"))).await.unwrap();
    let needed = wait_text(c, "#needed-by", |t| !t.is_empty()).await;
    assert_eq!(needed, "web Unknown");
    browser.close().await;
}

/// A DevTools command sent through chromedriver
/// (`POST /session/{id}/goog/cdp/execute`), with its parameters.
#[derive(Debug)]
struct DevTools(&'static str, serde_json::Value);

impl fantoccini::wd::WebDriverCompatibleCommand for DevTools {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = serde_json::json!({"cmd": self.0, "params": self.1});
        (http::Method::POST, Some(body.to_string()))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_status_page_from_the_form_and_the_installable_app_in_chromium() {
    let mut hub = lookout_testkit::spawn_hub_with(|c| c.notify.web_push_http = true).await;
    let up = Target::start(200).await;
    let down = Target::start(200).await;
    let mut ids = Vec::new();
    for (name, target, tags) in [
        ("Jellyfin", &up, vec![]),
        ("Nextcloud", &up, vec!["family"]),
        ("Photos", &down, vec!["family"]),
        ("Router", &up, vec![]),
    ] {
        let s = hub
            .create_service(serde_json::json!({"name": name, "base_url": target.url(),
                "check_interval_secs": 1, "tags": tags}))
            .await;
        ids.push(s["id"].as_i64().unwrap());
    }
    let browser = Browser::start().await;
    let c = &browser.client;

    // Made from the form: a mistake first, said under its field.
    c.goto(&hub.url("/status-pages")).await.unwrap();
    click(c, "new-status-page").await;
    c.wait().for_element(Locator::Id("title")).await.unwrap();
    fill(c, "title", "Home services").await;
    fill(c, "slug", "Home Page").await;
    click(c, &format!("svc-{}", ids[0])).await;
    click(c, "save-status-page").await;
    let error = wait_text(c, "#slug-error", |t| !t.is_empty()).await;
    assert!(error.contains("lowercase letters"), "{error}");
    three_screenshots(c, "status-page-form").await;
    fill(c, "slug", "home").await;
    fill(c, "tags", "family").await;
    fill(c, "description", "Is it down, or is it the Wi-Fi?").await;
    fill(c, "notice", "New router on Sunday morning").await;
    click(c, "save-status-page").await;
    wait_path(c, |p| p == "/status-pages?notice=saved").await;
    three_screenshots(c, "status-pages").await;
    // Edited: the form comes back filled; the change shows at once.
    click(c, "edit-home").await;
    let kept = c
        .find(Locator::Id("tags"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("family"));
    fill(c, "title", "Our home services").await;
    click(c, "save-status-page").await;
    wait_path(c, |p| p == "/status-pages?notice=saved").await;
    let listed = wait_text(c, "#status-pages", |t| !t.is_empty()).await;
    assert!(listed.contains("Our home services"), "{listed}");

    // The page itself: the chosen service and the tagged ones.
    down.set_status(500);
    hub.wait_for_service(ids[2], DEADLINE * 2, |s| s["state"] == "FAILURE")
        .await;
    click(c, "open-home").await;
    let until = tokio::time::Instant::now() + DEADLINE * 2;
    // Browsers may keep the page for its max-age: each look asks anew.
    for look in 0.. {
        c.goto(&hub.url(&format!("/status/home?look={look}")))
            .await
            .unwrap();
        let overall = wait_text(c, "#overall", |t| !t.is_empty()).await;
        if overall.contains("1 service is down") {
            break;
        }
        assert!(tokio::time::Instant::now() < until, "{overall}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let names: Vec<String> = {
        let mut out = Vec::new();
        for el in c.find_all(Locator::Css(".public-name")).await.unwrap() {
            out.push(el.text().await.unwrap());
        }
        out
    };
    assert_eq!(names, ["Jellyfin", "Nextcloud", "Photos"]);
    assert_eq!(
        c.find_all(Locator::Css("[data-service=Jellyfin] .bar"))
            .await
            .unwrap()
            .len(),
        30
    );
    let incident = wait_text(c, "#incidents", |t| !t.is_empty()).await;
    assert!(incident.starts_with("Photos was down since"), "{incident}");
    assert!(
        c.find(Locator::Css("nav")).await.is_err(),
        "no dashboard navigation"
    );
    three_screenshots(c, "status-page").await;

    // The installable app: its service worker runs, and Chromium finds
    // nothing that stops it from being installed.
    c.goto(&hub.url("/")).await.unwrap();
    let ready = c
        .execute_async(
            "const done = arguments[0]; navigator.serviceWorker.ready.then((r) => done(!!r.active));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(ready, serde_json::json!(true));
    let said = c
        .issue_cmd(DevTools(
            "Page.getInstallabilityErrors",
            serde_json::json!({}),
        ))
        .await
        .unwrap();
    assert_eq!(
        said["installabilityErrors"],
        serde_json::json!([]),
        "{said}"
    );
    let manifest: serde_json::Value = hub.get_json("/manifest.webmanifest").await;
    assert_eq!(manifest["display"], "standalone");

    // A device that gets notifications, listed and removed from the page.
    let key = p256::SecretKey::from_slice(&[5u8; 32]).unwrap();
    use base64::Engine as _;
    use p256::elliptic_curve::sec1::ToEncodedPoint as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let r = hub
        .post_json(
            "/api/v1/users/me/devices",
            &serde_json::json!({"endpoint": "https://push.example.net/wpush/v2/abc", "device": "Pixel 8",
                "keys": {"p256dh": b64(key.public_key().to_encoded_point(false).as_bytes()), "auth": b64(&[1; 16])}}),
        )
        .await;
    assert_eq!(r.status(), 201);
    c.goto(&hub.url("/notifications")).await.unwrap();
    let listed = wait_text(c, "#device-list", |t| !t.is_empty()).await;
    assert!(listed.contains("Pixel 8"), "{listed}");
    c.execute(
        "document.getElementById('devices').scrollIntoView()",
        vec![],
    )
    .await
    .unwrap();
    three_screenshots(c, "notifications-devices").await;
    let remove = c.find(Locator::Css("#device-list button")).await.unwrap();
    remove.click().await.unwrap();
    c.accept_alert().await.unwrap();
    wait_text(c, "#no-devices", |t| !t.is_empty()).await;

    // Offline, the last dashboard this browser saw, saying so.
    c.goto(&hub.url("/")).await.unwrap();
    wait_text(c, "#services", |t| t.contains("Photos")).await;
    let url = hub.url("/");
    hub.stop().await;
    c.goto(&url).await.unwrap();
    let banner = wait_text(c, "#offline-banner", |t| !t.is_empty()).await;
    assert!(
        banner.starts_with("Offline: this is the state lookout showed"),
        "{banner}"
    );
    wait_text(c, "#services", |t| {
        t.contains("Photos") && t.contains("Router")
    })
    .await;
    screenshot(c, "dashboard-offline").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_on_the_scan_page_and_a_containers_service_page_in_chromium() {
    use lookout_testkit::podman::IMAGE;
    use lookout_testkit::{spawn_hub_with, Podman};
    let podman = Podman::start();
    for (name, service, extra) in [
        ("web", "web", vec!["-p", "127.0.0.1:8080:80"]),
        ("db", "db", vec![]),
    ] {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend(extra);
        let label = format!("com.docker.compose.service={service}");
        args.extend([
            "--label",
            "com.docker.compose.project=home",
            "--label",
            &label,
            "--health-cmd",
            "wget -q -O- http://127.0.0.1/ || exit 1",
            "--health-interval=0",
            "--health-retries=1",
            IMAGE,
            "sh",
            "-c",
            "trap 'exit 0' TERM; echo ready; echo 'a warning' >&2; httpd -f -p 80 -h /www & wait",
        ]);
        podman.ok(&args);
    }
    podman.ok(&[
        "run",
        "-d",
        "--name",
        "backup",
        IMAGE,
        "sh",
        "-c",
        "echo done; exit 3",
    ]);
    podman.ok(&["healthcheck", "run", "web"]);
    let socket = podman.socket();
    let hub = spawn_hub_with(move |c| {
        c.containers = lookout_hub::config::ContainerEngine::Socket(socket.clone());
    })
    .await;

    // The scan page: the Compose project's two containers together, the
    // lone one apart, each with its state, image and ports.
    let browser = Browser::start().await;
    let c = &browser.client;
    c.goto(&hub.url("/scan")).await.unwrap();
    wait_text(
        c,
        "table[data-project='home'] tr[data-container='web']",
        |t| t.contains("running · healthy") && t.contains("127.0.0.1:8080→80/tcp"),
    )
    .await;
    wait_text(
        c,
        "table[data-project=''] tr[data-container='backup']",
        |t| t.contains("exited (3)"),
    )
    .await;
    screenshot(c, "containers-scan-desktop").await;
    c.set_window_size(390, 844).await.unwrap();
    c.execute(
        "document.getElementById('containers-title').scrollIntoView()",
        vec![],
    )
    .await
    .unwrap();
    assert_no_sideways_scroll(c).await;
    screenshot(c, "containers-scan-phone").await;
    c.set_window_size(1280, 900).await.unwrap();
    dark_screenshot(&hub.url("/scan"), "containers-scan-dark");

    // Added to the registry from its row: the form comes filled in.
    c.goto(&hub.url("/scan")).await.unwrap();
    let add = c
        .find(Locator::Css("tr[data-container='web'] a.button"))
        .await
        .unwrap();
    add.click().await.unwrap();
    wait_path(c, |p| p.starts_with("/services/new?")).await;
    // The published port lives in the engine's own network namespace here,
    // out of the hub's reach: no URL to check, the container's state says.
    let url = c
        .find(Locator::Css("input[name='base_url']"))
        .await
        .unwrap();
    assert_eq!(
        url.prop("value").await.unwrap().unwrap_or_default(),
        "http://127.0.0.1:8080"
    );
    url.clear().await.unwrap();
    let name = c
        .find(Locator::Css("input[name='name']"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default();
    assert_eq!(name, "web");
    c.find(Locator::Css("form button[type='submit']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_path(c, |p| p == "/?notice=created").await;
    let listed = hub.get_json("/api/services").await;
    let id = listed
        .as_array()
        .and_then(|l| l.iter().find(|s| s["name"] == "web"))
        .and_then(|s| s["id"].as_i64())
        .unwrap();
    let path = format!("/services/{id}");

    // Its page: the container's facts, its log, its buttons.
    c.goto(&hub.url(&path)).await.unwrap();
    wait_text(c, "#container-state", |t| {
        t.starts_with("running · healthy")
    })
    .await;
    wait_text(c, "#container-compose", |t| t == "home / web").await;
    wait_text(c, "#container-log", |t| {
        t.contains("ready") && t.contains("a warning")
    })
    .await;
    screenshot(c, "container-page-desktop").await;
    c.set_window_size(390, 844).await.unwrap();
    assert_no_sideways_scroll(c).await;
    c.execute(
        "document.getElementById('container').scrollIntoView()",
        vec![],
    )
    .await
    .unwrap();
    screenshot(c, "container-page-phone").await;
    c.set_window_size(1280, 900).await.unwrap();
    dark_screenshot(&hub.url(&path), "container-page-dark");

    // Stopped and started from the page.
    click(c, "container-stop").await;
    wait_path(c, |p| p == path).await;
    wait_text(c, "#container-state", |t| t.starts_with("exited")).await;
    click(c, "container-start").await;
    wait_path(c, |p| p == path).await;
    wait_text(c, "#container-state", |t| t.starts_with("running")).await;

    // A failing health check shows with its output.
    podman.ok(&["exec", "web", "rm", "/www/index.html"]);
    let _ = podman.run(&["healthcheck", "run", "web"]);
    hub.wait_for_service(id, DEADLINE, |s| s["container"]["health"] == "unhealthy")
        .await;
    c.goto(&hub.url(&path)).await.unwrap();
    wait_text(c, "#container-health-output", |t| t.contains("404")).await;
    screenshot(c, "container-page-unhealthy").await;

    // The dashboard grouped by Compose project.
    c.goto(&hub.url("/?group=compose")).await.unwrap();
    wait_text(c, "tbody[data-compose='home']", |t| t.contains("web")).await;
    screenshot(c, "containers-dashboard-desktop").await;
    c.set_window_size(390, 844).await.unwrap();
    assert_no_sideways_scroll(c).await;
    screenshot(c, "containers-dashboard-phone").await;
    c.set_window_size(1280, 900).await.unwrap();
    dark_screenshot(&hub.url("/?group=compose"), "containers-dashboard-dark");
    browser.close().await;
}
