//! The real `lookout` binary: start-up, settings errors, shutdown.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_lookout");

fn run(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .env("LOOKOUT_DATA_DIR", dir.path())
        .env("LOOKOUT_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_settings_stop_start_up_with_one_line_naming_them() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            &["serve", "--listen", "nowhere"],
            &[],
            "invalid --listen \"nowhere\"",
        ),
        (
            &["serve"],
            &[("LOOKOUT_CHECK_TIMEOUT", "2 parsecs")],
            "invalid LOOKOUT_CHECK_TIMEOUT",
        ),
        (
            &["serve"],
            &[("LOOKOUT_CHECK_INTERVAL", "0")],
            "invalid LOOKOUT_CHECK_INTERVAL",
        ),
        (
            &["serve", "--database", "mysql://db"],
            &[],
            "invalid --database",
        ),
        (&["serve", "--database", "postgres://db"], &[], "PostgreSQL"),
        (
            &["serve", "--config", "/nonexistent/lookout.toml"],
            &[],
            "cannot read config file /nonexistent/lookout.toml",
        ),
        (
            &["serve", "--listen", "0.0.0.0:0", "--auth", "off"],
            &[],
            "refusing to listen on 0.0.0.0:0 with --auth off",
        ),
        (
            &["serve", "--listen", "[::]:0"],
            &[("LOOKOUT_AUTH", "off")],
            "refusing to listen on [::]:0 with --auth off",
        ),
        (
            &["serve", "--auth", "sometimes"],
            &[],
            "invalid --auth \"sometimes\"",
        ),
        (
            &["serve", "--tls-cert", "/nonexistent/cert.pem"],
            &[],
            "--tls-cert needs --tls-key",
        ),
        (
            &[
                "serve",
                "--tls-cert",
                "/nonexistent/cert.pem",
                "--tls-key",
                "/nonexistent/key.pem",
            ],
            &[],
            "/nonexistent/cert.pem",
        ),
    ];
    for (args, env, expected) in cases {
        let (ok, stderr) = run(args, env);
        assert!(!ok, "{args:?} started");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "not one line: {stderr}"
        );
    }
}

#[test]
fn config_file_errors_name_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lookout.toml");
    std::fs::write(&path, "listen = \"127.0.0.1:0\"\ncolour = \"blue\"\n").unwrap();
    let (ok, stderr) = run(&["serve", "--config", path.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(stderr.contains("unknown setting \"colour\""), "{stderr}");
    std::fs::write(&path, "check_timeout = \"forever\"\n").unwrap();
    let (ok, stderr) = run(&["serve", "--config", path.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(
        stderr.contains(&format!(
            "invalid check_timeout in config file {}",
            path.display()
        )),
        "{stderr}"
    );
    // A value of the wrong shape: named with the file, in one line.
    std::fs::write(&path, "watch = [[\"nginx.service\"]]\n").unwrap();
    let (ok, stderr) = run(&["serve", "--config", path.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(
        stderr.contains(&format!("invalid watch in config file {}", path.display())),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    // Lists as TOML arrays, humantime durations, sizes, bare numbers and
    // booleans are all taken: the only complaint is about TLS, checked
    // after every one of them; and a flag still beats the file.
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:1\"\nwatch = [\"nginx.service\", \"backup-*.timer\"]\n\
         check_interval = \"1h 30m\"\nmax_body = \"256KiB\"\nself_check = true\n\
         check_concurrency = 16\n",
    )
    .unwrap();
    let (ok, stderr) = run(
        &[
            "serve",
            "--config",
            path.to_str().unwrap(),
            "--tls-cert",
            "/nonexistent/cert.pem",
        ],
        &[],
    );
    assert!(!ok);
    assert!(stderr.contains("--tls-cert needs --tls-key"), "{stderr}");
    std::fs::write(&path, "listen = \"127.0.0.1:1\"\n").unwrap();
    let (ok, stderr) = run(
        &[
            "serve",
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "nowhere",
        ],
        &[],
    );
    assert!(!ok);
    assert!(stderr.contains("invalid --listen \"nowhere\""), "{stderr}");
}

#[test]
fn version_is_printed() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("lookout "));
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_answers_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nested/data");
    let config = dir.path().join("lookout.toml");
    std::fs::write(
        &config,
        "check_interval = \"30s\"\nlisten = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ])
    .env("LOOKOUT_DATA_DIR", &data)
    .env("LOOKOUT_LOG", "info");
    let mut hub = lookout_testkit::spawn_hub_process(cmd, dir);
    let addr = hub.addr.to_string();
    assert!(!addr.ends_with(":1"), "the flag beats the config file");
    let services: serde_json::Value = reqwest::get(format!("http://{addr}/api/services"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(services, serde_json::json!([]));
    let created = reqwest::Client::new()
        .post(format!("http://{addr}/api/services"))
        .json(&serde_json::json!({"name": "via-binary"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: serde_json::Value = created.json().await.unwrap();
    assert_eq!(
        created["check_interval_secs"], 30,
        "config file setting applied"
    );
    assert!(
        data.join("lookout.db").exists(),
        "SQLite file in the data dir"
    );

    let exit = hub.terminate().expect("the hub exits on SIGTERM");
    assert!(exit.success(), "exit status {exit}");
}

#[tokio::test(flavor = "multi_thread")]
async fn off_loopback_authentication_is_required_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "0.0.0.0:0", "--systemd", "none"])
        .arg("--data-dir")
        .arg(dir.path());
    let hub = lookout_testkit::spawn_hub_process(cmd, dir);
    let port = hub.addr.port();
    let r = reqwest::get(format!("http://127.0.0.1:{port}/api/services"))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_network_is_served_without_auth_only_when_asked_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--systemd",
        "none",
        "--insecure-no-auth-on-network",
    ])
    .arg("--data-dir")
    .arg(dir.path());
    let hub = lookout_testkit::spawn_hub_process(cmd, dir);
    assert!(hub.addr.ip().is_unspecified());
    let port = hub.addr.port();
    let r = reqwest::get(format!("http://127.0.0.1:{port}/api/services"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_reports_the_schema_and_a_newer_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pg = lookout_testkit::postgres::fresh_database().await;
    let sqlite = ["--data-dir".to_owned(), dir.path().display().to_string()];
    let postgres = ["--database".to_owned(), pg.clone()];
    for db_args in [&sqlite, &postgres] {
        let run = |args: &[&str]| {
            let out = Command::new(BIN)
                .args(args)
                .args(db_args)
                .env("LOOKOUT_LISTEN", "127.0.0.1:0")
                .env_remove("LOOKOUT_DATABASE")
                .output()
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let (ok, out, err) = run(&["migrate"]);
        assert!(ok, "{err}");
        assert!(out.trim_end().ends_with(", up to date"), "{out}");
        let version: i64 = out
            .split("schema version ")
            .nth(1)
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{out}"));
        assert!(version >= 9, "{out}");

        // A newer lookout migrated this database further: this one leaves it alone.
        if db_args == &sqlite {
            let db = dir.path().join("lookout.db");
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
                .await
                .unwrap();
            sqlx::query(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
                 VALUES (?, 'from the future', TRUE, x'00', 0)",
            )
            .bind(version + 1)
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        } else {
            use sqlx::Connection as _;
            let mut conn = sqlx::PgConnection::connect(&pg).await.unwrap();
            sqlx::query(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
                 VALUES ($1, 'from the future', TRUE, '\\x00'::bytea, 0)",
            )
            .bind(version + 1)
            .execute(&mut conn)
            .await
            .unwrap();
        }
        for command in [&["migrate"][..], &["serve", "--systemd", "none"][..]] {
            let (ok, _, err) = run(command);
            assert!(!ok, "{command:?} accepted a newer schema");
            assert!(
                err.contains(&format!(
                    "schema (version {}) is newer than this lookout knows (version {version})",
                    version + 1
                )),
                "{command:?}: {err}"
            );
            assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        }
    }
}
