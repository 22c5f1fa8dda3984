//! `lookout export` and `lookout import`: a hub's whole database as one
//! versioned JSON document, loaded into a new database exactly, all or nothing.

use std::path::Path;
use std::process::Command;

use lookout_testkit::{spawn_hub_with, TestHub};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_lookout");

fn lookout(data_dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn export(data_dir: &Path, file: &Path) -> Value {
    let (ok, _, err) = lookout(data_dir, &["export", "--output", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap()
}

/// A hub with something in every part of the database.
async fn busy_hub() -> TestHub {
    let hub = spawn_hub_with(|_| {}).await;
    let svc = hub
        .create_service(json!({"name": "web", "base_url": "http://127.0.0.1:9", "health_endpoint": "/h",
                               "description": "Ünïcode, \"quotes\", 100%", "check_interval_secs": 1}))
        .await;
    hub.create_service(json!({"name": "plain"})).await;
    let id = svc["id"].as_i64().unwrap();
    hub.wait_for_service(id, std::time::Duration::from_secs(10), |s| {
        s["state"] == "FAILURE"
    })
    .await;
    let r = hub
        .post_json(
            &format!("/api/services/{id}/push-token"),
            &json!({"period_secs": 60}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = hub
        .post_json(
            "/api/notifications/channels",
            &json!({"name": "hook", "kind": "webhook", "config": {"url": "http://127.0.0.1:9/hook"}}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = hub
        .post_json(
            "/api/v1/agents/register",
            &json!({"server_name": "web-01", "labels": ["a"]}),
        )
        .await;
    assert_eq!(r.status(), 201);
    hub
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_imports_into_a_new_database_exactly() {
    let mut hub = busy_hub().await;
    let (ok, _, err) = {
        let mut c = Command::new(BIN);
        let mut child = c
            .args(["user", "add", "ada", "--admin", "--data-dir"])
            .arg(hub.data_dir())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        writeln!(child.stdin.take().unwrap(), "correct horse battery").unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::new(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert!(ok, "{err}");
    let services_before = hub.get_json("/api/services").await;
    hub.stop().await;

    let out = tempfile::tempdir().unwrap();
    let first = export(hub.data_dir(), &out.path().join("a.json"));
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(out.path().join("a.json"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "an export holds password hashes: owner only");
    assert_eq!(first["format"], "lookout-export");
    assert_eq!(first["version"], 1);
    for table in [
        "services",
        "health_checks",
        "status_events",
        "users",
        "servers",
        "channels",
        "event_log",
    ] {
        let rows = first["tables"][table].as_array().unwrap();
        assert!(!rows.is_empty(), "{table} is empty in the export");
    }

    // Into a new data directory, then out again: the same document.
    let fresh = tempfile::tempdir().unwrap();
    let (ok, said, err) = lookout(
        fresh.path(),
        &["import", out.path().join("a.json").to_str().unwrap()],
    );
    assert!(ok, "{err}");
    assert!(said.starts_with("imported "), "{said}");
    let second = export(fresh.path(), &out.path().join("b.json"));
    let strip = |mut v: Value| {
        v["exported_at"] = Value::Null;
        v
    };
    assert_eq!(strip(first.clone()), strip(second));

    // A hub on the imported database serves the same registry, and the
    // account works.
    let copy = fresh.path().to_path_buf();
    let hub = spawn_hub_with(move |c| {
        c.data_dir = copy.clone();
        c.database =
            lookout_hub::config::DatabaseUrl::Sqlite(copy.join(lookout_hub::config::DB_FILE));
    })
    .await;
    let services_after = hub.get_json("/api/services").await;
    let names = |v: &Value| -> Vec<(Value, Value, Value)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| (s["id"].clone(), s["name"].clone(), s["description"].clone()))
            .collect()
    };
    assert_eq!(names(&services_before), names(&services_after));
    let r = hub
        .post_json(
            "/api/v1/users/login",
            &json!({"username": "ada", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn imports_that_do_not_fit_change_nothing_and_say_why() {
    let mut hub = busy_hub().await;
    hub.stop().await;
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("a.json");
    let dump = export(hub.data_dir(), &file);

    // Into a database that has data: refused, nothing added.
    let before = export(hub.data_dir(), &out.path().join("before.json"));
    let (ok, _, err) = lookout(hub.data_dir(), &["import", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("the database is not empty"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let after = export(hub.data_dir(), &out.path().join("after.json"));
    assert_eq!(before["tables"], after["tables"]);

    let cases: Vec<(Value, &str)> = vec![
        (json!({"format": "something else"}), "not a lookout export"),
        (
            {
                let mut d = dump.clone();
                d["version"] = json!(99);
                d
            },
            "export format version 99",
        ),
        (
            {
                let mut d = dump.clone();
                d["schema"] = json!(1);
                d
            },
            "schema version 1",
        ),
        (
            {
                let mut d = dump.clone();
                d["tables"]["secrets"] = json!([]);
                d
            },
            "unknown table \"secrets\"",
        ),
        (
            {
                let mut d = dump.clone();
                d["tables"]["services"][0]["evil\"); DROP TABLE users; --"] = json!(1);
                d
            },
            "unknown column",
        ),
        // A check result of a service that is not there: the rows do not fit.
        (
            {
                let mut d = dump.clone();
                d["tables"]["services"] = json!([]);
                d
            },
            "do not fit together",
        ),
    ];
    for (bad, expected) in cases {
        let fresh = tempfile::tempdir().unwrap();
        let path = out.path().join("bad.json");
        std::fs::write(&path, bad.to_string()).unwrap();
        let (ok, _, err) = lookout(fresh.path(), &["import", path.to_str().unwrap()]);
        assert!(!ok, "{expected}");
        assert!(err.contains(expected), "{expected}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        // All or nothing: the database is still empty.
        let left = export(fresh.path(), &out.path().join("left.json"));
        for (table, rows) in left["tables"].as_object().unwrap() {
            assert_eq!(rows, &json!([]), "{table} kept rows of a failed import");
        }
    }
}

#[tokio::test]
async fn the_export_names_every_table() {
    let dir = tempfile::tempdir().unwrap();
    let store = lookout_hub::store::SqliteStore::open(&dir.path().join("x.db"))
        .await
        .unwrap();
    let mut all = store.table_names().await.unwrap();
    all.sort();
    let mut exported: Vec<String> = lookout_hub::store::sqlite::export::EXPORT_TABLES
        .iter()
        .map(|t| (*t).to_owned())
        .collect();
    exported.sort();
    assert_eq!(
        all, exported,
        "a table is missing from the export (or gone from the schema)"
    );
}
