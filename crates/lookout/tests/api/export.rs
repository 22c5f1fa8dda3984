//! `lookout export` and `lookout import`: a hub's whole database as one
//! versioned JSON document, loaded into a new database exactly, all or nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use lookout_hub::config::DatabaseUrl;
use lookout_testkit::postgres::{fresh_database, hubs_on_postgres};
use lookout_testkit::{spawn_hub_with, TestHub};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_lookout");

/// A database as the CLI is told about it.
#[derive(Clone, Debug)]
enum Db {
    /// A data directory holding `lookout.db`.
    Dir(PathBuf),
    /// A PostgreSQL URL.
    Pg(String),
}

impl Db {
    fn of(hub: &TestHub) -> Db {
        match hub.database() {
            Some(url) => Db::Pg(url.to_owned()),
            None => Db::Dir(hub.data_dir().to_path_buf()),
        }
    }

    /// A new empty database of the kind the suite runs its hubs on; the
    /// directory is kept alive by the caller.
    async fn fresh(dir: &Path) -> Db {
        if hubs_on_postgres() {
            Db::Pg(fresh_database().await)
        } else {
            Db::Dir(dir.to_path_buf())
        }
    }

    fn url(&self) -> DatabaseUrl {
        match self {
            Db::Dir(d) => DatabaseUrl::Sqlite(d.join(lookout_hub::config::DB_FILE)),
            Db::Pg(url) => DatabaseUrl::Postgres(url.clone()),
        }
    }

    fn args(&self) -> Vec<String> {
        match self {
            Db::Dir(d) => vec!["--data-dir".into(), d.display().to_string()],
            Db::Pg(url) => vec!["--database".into(), url.clone()],
        }
    }
}

fn lookout(db: &Db, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .args(db.args())
        .env_remove("LOOKOUT_DATABASE")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn export(db: &Db, file: &Path) -> Value {
    let (ok, _, err) = lookout(db, &["export", "--output", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap()
}

/// A hub with something in every part of the database.
async fn busy_hub() -> TestHub {
    busy_hub_with(|_| {}).await
}

async fn busy_hub_with(
    tweak: impl Fn(&mut lookout_hub::Config) + Send + Sync + 'static,
) -> TestHub {
    let hub = spawn_hub_with(tweak).await;
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
            .args(["user", "add", "ada", "--admin"])
            .args(Db::of(&hub).args())
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
    let first = export(&Db::of(&hub), &out.path().join("a.json"));
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

    // Into a new database, then out again: the same document.
    let dir = tempfile::tempdir().unwrap();
    let fresh = Db::fresh(dir.path()).await;
    let (ok, said, err) = lookout(
        &fresh,
        &["import", out.path().join("a.json").to_str().unwrap()],
    );
    assert!(ok, "{err}");
    assert!(said.starts_with("imported "), "{said}");
    let second = export(&fresh, &out.path().join("b.json"));
    let strip = |mut v: Value| {
        v["exported_at"] = Value::Null;
        v
    };
    assert_eq!(strip(first.clone()), strip(second));

    // A hub on the imported database serves the same registry, and the
    // account works.
    let hub = hub_on(&fresh, dir.path()).await;
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

/// A hub on `db`, whatever the suite runs on.
async fn hub_on(db: &Db, dir: &Path) -> TestHub {
    let (url, dir) = (db.url(), dir.to_path_buf());
    spawn_hub_with(move |c| {
        c.data_dir = dir.clone();
        c.database = url.clone();
    })
    .await
}

fn strip(mut v: Value) -> Value {
    v["exported_at"] = Value::Null;
    v
}

/// Moving from SQLite to PostgreSQL (and back): the same document on both
/// sides, and a hub on PostgreSQL serving what the SQLite hub served.
#[tokio::test(flavor = "multi_thread")]
async fn sqlite_moves_to_postgresql_and_back_exactly() {
    let sqlite_dir = tempfile::tempdir().unwrap();
    let on_sqlite = Db::Dir(sqlite_dir.path().to_path_buf());
    let (url, dir) = (on_sqlite.url(), sqlite_dir.path().to_path_buf());
    let mut hub = busy_hub_with(move |c| {
        c.data_dir = dir.clone();
        c.database = url.clone();
    })
    .await;
    let services_before = hub.get_json("/api/services").await;
    hub.stop().await;
    let out = tempfile::tempdir().unwrap();
    let from_sqlite = export(&on_sqlite, &out.path().join("sqlite.json"));

    let on_pg = Db::Pg(fresh_database().await);
    let (ok, _, err) = lookout(
        &on_pg,
        &["import", out.path().join("sqlite.json").to_str().unwrap()],
    );
    assert!(ok, "{err}");
    let from_pg = export(&on_pg, &out.path().join("pg.json"));
    assert_eq!(strip(from_sqlite.clone()), strip(from_pg));

    let pg_dir = tempfile::tempdir().unwrap();
    let mut hub = hub_on(&on_pg, pg_dir.path()).await;
    // (Checks go on, so only what they do not touch is compared.)
    let registry = |v: &Value| -> Vec<Value> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| {
                json!([
                    s["id"],
                    s["name"],
                    s["description"],
                    s["health_url"],
                    s["push"]["period_secs"]
                ])
            })
            .collect()
    };
    assert_eq!(
        registry(&hub.get_json("/api/services").await),
        registry(&services_before)
    );
    // New rows number after the imported ones.
    let added = hub.create_service(json!({"name": "after-the-move"})).await;
    let max_id = services_before
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["id"].as_i64())
        .max()
        .unwrap();
    assert!(added["id"].as_i64().unwrap() > max_id, "{added}");
    hub.stop().await;

    // And back to SQLite.
    let back_dir = tempfile::tempdir().unwrap();
    let back = Db::Dir(back_dir.path().to_path_buf());
    let again = export(&on_pg, &out.path().join("pg2.json"));
    let (ok, _, err) = lookout(
        &back,
        &["import", out.path().join("pg2.json").to_str().unwrap()],
    );
    assert!(ok, "{err}");
    assert_eq!(
        strip(again),
        strip(export(&back, &out.path().join("back.json")))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn imports_that_do_not_fit_change_nothing_and_say_why() {
    let mut hub = busy_hub().await;
    hub.stop().await;
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("a.json");
    let db = Db::of(&hub);
    let dump = export(&db, &file);

    // Into a database that has data: refused, nothing added.
    let before = export(&db, &out.path().join("before.json"));
    let (ok, _, err) = lookout(&db, &["import", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("the database is not empty"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let after = export(&db, &out.path().join("after.json"));
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
        let dir = tempfile::tempdir().unwrap();
        let fresh = Db::fresh(dir.path()).await;
        let path = out.path().join("bad.json");
        std::fs::write(&path, bad.to_string()).unwrap();
        let (ok, _, err) = lookout(&fresh, &["import", path.to_str().unwrap()]);
        assert!(!ok, "{expected}");
        assert!(err.contains(expected), "{expected}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        // All or nothing: the database is still empty.
        let left = export(&fresh, &out.path().join("left.json"));
        for (table, rows) in left["tables"].as_object().unwrap() {
            assert_eq!(rows, &json!([]), "{table} kept rows of a failed import");
        }
    }
}

#[tokio::test]
async fn the_export_names_every_table() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = lookout_hub::store::SqlStore::open(&dir.path().join("x.db"))
        .await
        .unwrap();
    let pg = lookout_hub::store::SqlStore::connect_postgres(&fresh_database().await)
        .await
        .unwrap();
    use lookout_hub::store::sql::export::{COORDINATION_TABLES, EXPORT_TABLES};
    let mut exported: Vec<String> = EXPORT_TABLES
        .iter()
        .chain(COORDINATION_TABLES)
        .map(|t| (*t).to_owned())
        .collect();
    exported.sort();
    for store in [sqlite, pg] {
        let mut all = store.table_names().await.unwrap();
        all.sort();
        assert_eq!(
            all,
            exported,
            "{:?}: a table is missing from the export (or gone from the schema)",
            store.backend()
        );
    }
}
