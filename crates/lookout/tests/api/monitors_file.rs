//! Monitors as code: a monitors file loaded at start and followed on change
//! (edit, add, remove, reload), its services read-only through the API and
//! the dashboard, services made there never touched; Gatus's files loaded
//! as they are; an export that loads back.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lookout_testkit::{spawn_hub_with, TestHub};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_lookout");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gatus")
        .join(name)
}

async fn hub_following(file: &Path) -> TestHub {
    let file = file.to_owned();
    spawn_hub_with(move |c| {
        c.monitors = Some(file.clone());
        c.self_check = false;
    })
    .await
}

/// The services by name, once `pred` holds of them (within `within`); how
/// long that took.
async fn services_when(
    hub: &TestHub,
    within: Duration,
    pred: impl Fn(&[Value]) -> bool,
) -> (Vec<Value>, Duration) {
    let started = Instant::now();
    loop {
        let list = hub.get_json("/api/services").await;
        let list = list.as_array().unwrap().clone();
        if pred(&list) {
            return (list, started.elapsed());
        }
        assert!(
            started.elapsed() < within,
            "not within {within:?}: {}",
            serde_json::to_string_pretty(&list).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Each service's name and check kind.
fn kinds(list: &[Value]) -> Vec<(&str, &str)> {
    list.iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap(),
                s["check_kind"].as_str().unwrap(),
            )
        })
        .collect()
}

fn named<'a>(list: &'a [Value], name: &str) -> Option<&'a Value> {
    list.iter().find(|s| s["name"] == name)
}

/// Writes `text` the way editors save: a new file renamed over the old.
fn save(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_monitors_file_is_loaded_followed_and_leaves_other_services_alone() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("monitors.toml");
    std::fs::write(
        &file,
        r#"
[[service]]
name = "router"
base_url = "tcp://127.0.0.1:1"
check_interval_secs = 60

[[service]]
name = "wiki"
base_url = "http://127.0.0.1:1/health"
conditions = ["[STATUS] == 200", { expr = "[RESPONSE_TIME] < 300", on_fail = "WARNING" }]
"#,
    )
    .unwrap();
    let hub = hub_following(&file).await;
    let (list, _) = services_when(&hub, Duration::from_secs(5), |l| l.len() == 2).await;
    let router = named(&list, "router").unwrap().clone();
    assert_eq!(router["source"], "file");
    assert_eq!(router["check_kind"], "tcp");
    let wiki = named(&list, "wiki").unwrap();
    assert_eq!(wiki["conditions"][1]["on_fail"], "WARNING");

    // One made through the API, and one whose name the file will claim.
    let mine = hub
        .create_service(json!({"name": "mine", "base_url": "http://127.0.0.1:1"}))
        .await;
    assert_eq!(mine["source"], "api");
    let taken = hub
        .create_service(json!({"name": "nas", "description": "made in the UI"}))
        .await;

    // The file's services are read-only through the API and the dashboard.
    let id = router["id"].as_i64().unwrap();
    let r = hub
        .put_json(
            &format!("/api/services/{id}"),
            &json!({"check_interval_secs": 5}),
        )
        .await;
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["fields"][0]["field"], "source");
    assert_eq!(
        body["fields"][0]["message"],
        "router is declared in the monitors file: change it there"
    );
    assert_eq!(
        hub.delete(&format!("/api/services/{id}")).await.status(),
        409
    );
    let form = hub.get(&format!("/services/{id}/edit")).await;
    assert_eq!(form.status(), 409);
    let page = hub.get_text(&format!("/services/{id}")).await;
    assert!(page.contains("Declared in the monitors file"));
    assert!(!page.contains(&format!("/services/{id}/edit")));

    // Edited: the router's interval changes, wiki goes, nas comes (its name
    // is taken in the UI: left alone), printer comes.
    save(
        &file,
        r#"
[[service]]
name = "router"
base_url = "tcp://127.0.0.1:1"
check_interval_secs = 30

[[service]]
name = "nas"
base_url = "icmp://127.0.0.1"

[[service]]
name = "printer"
base_url = "http://127.0.0.1:1"
"#,
    );
    let (list, took) = services_when(&hub, Duration::from_secs(5), |l| {
        named(l, "printer").is_some() && named(l, "wiki").is_none()
    })
    .await;
    assert!(took < Duration::from_secs(1), "followed in {took:?}");
    let router_now = named(&list, "router").unwrap();
    assert_eq!(router_now["check_interval_secs"], 30);
    assert_eq!(router_now["id"], router["id"], "updated, not replaced");
    let nas = named(&list, "nas").unwrap();
    assert_eq!(nas["id"], taken["id"]);
    assert_eq!(nas["description"], "made in the UI");
    assert_eq!(nas["source"], "api");
    let untouched = named(&list, "mine").unwrap();
    assert_eq!(untouched["id"], mine["id"]);
    assert_eq!(untouched["source"], "api");

    // A file that does not parse changes nothing.
    save(
        &file,
        "[[service]]\nname = \"router\"\nbase_url = \"ftp://x\"\n",
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let list = hub.get_json("/api/services").await;
    assert_eq!(list.as_array().unwrap().len(), 4, "{list}");
    // Nor does an empty one (a file being written: truncated, not filled).
    std::fs::write(&file, "").unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let list = hub.get_json("/api/services").await;
    assert_eq!(list.as_array().unwrap().len(), 4, "{list}");

    // Reloaded by a restart: the same services, the same ids.
    save(
        &file,
        "[[service]]\nname = \"router\"\nbase_url = \"tcp://127.0.0.1:1\"\ncheck_interval_secs = 30\n",
    );
    services_when(&hub, Duration::from_secs(5), |l| l.len() == 3).await;
    let hub = hub.restart().await;
    let (list, _) = services_when(&hub, Duration::from_secs(5), |l| l.len() == 3).await;
    assert_eq!(named(&list, "router").unwrap()["id"], router["id"]);
    assert!(named(&list, "printer").is_none());
    assert!(named(&list, "mine").is_some() && named(&list, "nas").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn gatus_files_load_unchanged() {
    let hub = hub_following(&fixture("home.yaml")).await;
    let (list, _) = services_when(&hub, Duration::from_secs(5), |l| l.len() == 4).await;
    assert_eq!(
        kinds(&list),
        [
            ("api-post", "http"),
            ("home-assistant", "http"),
            ("jellyfin", "http"),
            ("nextcloud", "http"),
        ]
    );
    let nextcloud = named(&list, "nextcloud").unwrap();
    assert_eq!(nextcloud["check_interval_secs"], 300);
    assert_eq!(nextcloud["check_timeout_ms"], 10_000);
    assert_eq!(nextcloud["tls"]["skip_verify"], true);
    assert_eq!(
        nextcloud["tags"],
        json!(["cloud"]),
        "a Gatus group is a tag"
    );
    assert_eq!(nextcloud["conditions"].as_array().unwrap().len(), 4);
    let post = named(&list, "api-post").unwrap();
    assert_eq!(post["http"]["method"], "POST");
    assert_eq!(
        named(&list, "home-assistant").unwrap()["http"]["headers"]["Authorization"],
        "********"
    );

    let hub = hub_following(&fixture("network.yaml")).await;
    let (list, _) = services_when(&hub, Duration::from_secs(5), |l| l.len() == 4).await;
    assert_eq!(
        kinds(&list),
        [
            ("mail-tls", "tls"),
            ("pihole", "dns"),
            ("postgres", "tcp"),
            ("router", "icmp"),
        ],
        "ssh:// is skipped, the disabled one too"
    );
    assert_eq!(
        named(&list, "pihole").unwrap()["dns"],
        json!({"name": "nas.home.arpa", "type": "A"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_loads_back_and_a_bad_file_stops_the_start() {
    let hub = spawn_hub_with(|c| c.self_check = false).await;
    for body in [
        json!({"name": "api", "base_url": "http://127.0.0.1:1/health", "check_interval_secs": 30,
               "conditions": ["[BODY].status == UP", {"expr": "[RESPONSE_TIME] < 300", "on_fail": "WARNING"}],
               "http": {"method": "POST", "headers": {"X-Probe": "1"}, "accepted_codes": ["200-299"]}}),
        json!({"name": "db", "base_url": "tcp://127.0.0.1:5432", "retry_interval_secs": 10}),
        json!({"name": "resolver", "base_url": "dns://127.0.0.1:53", "dns": {"name": "nas.home.arpa", "type": "AAAA"}}),
        json!({"name": "mail", "base_url": "tls://127.0.0.1:993", "tls": {"skip_verify": true}, "muted": true}),
    ] {
        hub.create_service(body).await;
    }
    let before = hub.get_json("/api/services").await;
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("exported.toml");
    // From the hub's database: its SQLite file, or PostgreSQL when the
    // suite runs there.
    let mut export = Command::new(BIN);
    export.args(["monitors", "export"]);
    match hub.database() {
        Some(url) => export.args(["--database", url]),
        None => export.arg("--data-dir").arg(hub.data_dir()),
    };
    let status = export.arg("-o").arg(&file).status().unwrap();
    assert!(status.success());

    let again = hub_following(&file).await;
    let (after, _) = services_when(&again, Duration::from_secs(5), |l| l.len() == 4).await;
    let settings = |s: &Value| {
        let mut s = s.clone();
        let o = s.as_object_mut().unwrap();
        o.retain(|k, _| {
            [
                "name",
                "base_url",
                "conditions",
                "http",
                "tls",
                "dns",
                "check_interval_secs",
                "retry_interval_secs",
                "muted",
                "port",
            ]
            .contains(&k.as_str())
        });
        s
    };
    for (a, b) in before.as_array().unwrap().iter().zip(&after) {
        assert_eq!(settings(a), settings(b));
        assert_eq!(b["source"], "file");
    }

    // A file that does not load stops the hub's start with one line.
    let bad = out.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[service]]\nname = \"x\"\nconditions = [\"[STATUS] => 200\"]\n",
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let result = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .arg("--monitors")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.contains(&format!(
            "monitors file {}: service 1 (\"x\"): conditions[0]:",
            bad.display()
        )),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn uptime_kumas_monitors_are_imported_with_their_kinds_and_keywords() {
    let data = tempfile::tempdir().unwrap();
    let kuma = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/uptime-kuma/kuma.db");
    let out = Command::new(BIN)
        .args(["import", "--uptime-kuma"])
        .arg(&kuma)
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.ends_with(&format!(
            "imported 8 of 13 monitors from {}\n",
            kuma.display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("imported \"Nightly backup\" (push: /api/push/Qx7dFhK2pLm)"),
        "{stdout}"
    );
    for skipped in [
        "skipped \"Old wiki\": paused in Uptime Kuma",
        "skipped \"Immich container\": Uptime Kuma's docker monitors have no lookout kind",
        "skipped \"JSONata sum\": its JSON query \"$sum(items.count)\" is a JSONata expression",
    ] {
        assert!(stdout.contains(skipped), "{skipped}: {stdout}");
    }
    // Imported again: nothing doubled.
    let again = Command::new(BIN)
        .args(["import", "--uptime-kuma"])
        .arg(&kuma)
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("imported 0 of 13"));

    let dir = data.path().to_owned();
    let hub = spawn_hub_with(move |c| {
        c.data_dir = dir.clone();
        c.database = lookout_hub::config::DatabaseUrl::Sqlite(dir.join("lookout.db"));
        c.self_check = false;
    })
    .await;
    let list = hub.get_json("/api/services").await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 8, "{list:#?}");
    let get = |name: &str| named(list, name).unwrap_or_else(|| panic!("{name}"));
    let jellyfin = get("Jellyfin");
    assert_eq!(
        (
            &jellyfin["check_interval_secs"],
            &jellyfin["retry_interval_secs"],
            &jellyfin["check_timeout_ms"],
            &jellyfin["description"],
        ),
        (
            &json!(60),
            &json!(20),
            &json!(48_000),
            &json!("Films and series")
        )
    );
    let login = get("Nextcloud login");
    assert_eq!(login["conditions"], json!(["[BODY] == pat(*Log in*)"]));
    assert_eq!(login["tls"]["skip_verify"], true);
    assert_eq!(login["http"]["follow_redirects"], false);
    assert_eq!(
        get("Status page calm")["conditions"],
        json!(["[BODY] != pat(*Major outage*)"])
    );
    let ha = get("Home Assistant API");
    assert_eq!(ha["conditions"], json!(["[BODY].state == RUNNING"]));
    assert_eq!(ha["http"]["method"], "POST");
    assert_eq!(ha["http"]["headers"]["Authorization"], "********");
    assert_eq!(ha["http"]["accepted_codes"], json!(["200-299", "304"]));
    assert_eq!(get("PostgreSQL")["base_url"], "tcp://192.168.1.12:5432");
    assert_eq!(get("Router")["base_url"], "icmp://192.168.1.1");
    let dns = get("Pi-hole answers");
    assert_eq!(dns["base_url"], "dns://192.168.1.2");
    assert_eq!(dns["dns"], json!({"name": "nas.home.arpa", "type": "A"}));
    // The push monitor keeps its token: the job's Uptime Kuma URL works
    // with lookout's host.
    let backup = get("Nightly backup");
    assert_eq!(backup["push"]["period_secs"], 86_400);
    let r = hub
        .client
        .get(hub.url("/api/push/Qx7dFhK2pLm?status=up&msg=OK&ping="))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = backup["id"].as_i64().unwrap();
    assert_eq!(hub.service(id).await["state"], "OK");
}

/// Dependencies and healing rules in a monitors file: a service may name
/// one declared after it; the export writes them by name and loads back.
#[tokio::test(flavor = "multi_thread")]
async fn dependencies_and_healing_rules_are_declared_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("monitors.toml");
    save(
        &file,
        r#"
[[service]]
name = "app"
base_url = "http://127.0.0.1:1"
depends_on = ["db"]
heal = { after = 3, unit = "app.service", max_per_hour = 2 }

[[service]]
name = "db"
base_url = "tcp://127.0.0.1:1"
"#,
    );
    let hub = hub_following(&file).await;
    let (list, _) = services_when(&hub, Duration::from_secs(5), |l| {
        named(l, "app").is_some_and(|a| a.get("depends_on").is_some())
    })
    .await;
    let db = named(&list, "db").unwrap()["id"].clone();
    let app = named(&list, "app").unwrap();
    assert_eq!(app["depends_on"], json!([db]));
    assert_eq!(
        app["heal"],
        json!({"after": 3, "action": "restart", "unit": "app.service", "max_per_hour": 2})
    );

    // The other way round now: the edit is followed, the rule removed.
    save(
        &file,
        "[[service]]\nname = \"app\"\nbase_url = \"http://127.0.0.1:1\"\n\n[[service]]\nname = \"db\"\nbase_url = \"tcp://127.0.0.1:1\"\ndepends_on = [\"app\"]\n",
    );
    let (list, _) = services_when(&hub, Duration::from_secs(5), |l| {
        named(l, "db").is_some_and(|d| d.get("depends_on").is_some())
    })
    .await;
    let app = named(&list, "app").unwrap();
    assert!(
        app.get("depends_on").is_none() && app.get("heal").is_none(),
        "{app}"
    );

    // Services made through the API export their dependencies by name;
    // loaded into another hub, they hold.
    hub.create_service(json!({"name": "back", "base_url": "tcp://127.0.0.1:1"}))
        .await;
    hub.create_service(json!({"name": "front", "base_url": "http://127.0.0.1:1",
        "depends_on": ["back"], "heal": {"after": 2, "unit": "front.service", "max_per_hour": 1}}))
        .await;
    let out = tempfile::tempdir().unwrap();
    let exported = out.path().join("exported.toml");
    let mut export = Command::new(BIN);
    export.args(["monitors", "export"]);
    match hub.database() {
        Some(url) => export.args(["--database", url]),
        None => export.arg("--data-dir").arg(hub.data_dir()),
    };
    assert!(export.arg("-o").arg(&exported).status().unwrap().success());
    let text = std::fs::read_to_string(&exported).unwrap();
    assert!(text.contains("depends_on = [\"back\"]"), "{text}");
    let again = hub_following(&exported).await;
    let (list, _) = services_when(&again, Duration::from_secs(5), |l| {
        named(l, "front").is_some_and(|d| d.get("depends_on").is_some())
    })
    .await;
    let back = named(&list, "back").unwrap()["id"].clone();
    let front = named(&list, "front").unwrap();
    assert_eq!(front["depends_on"], json!([back]));
    assert_eq!(
        front["heal"],
        json!({"after": 2, "action": "restart", "unit": "front.service", "max_per_hour": 1})
    );
}
