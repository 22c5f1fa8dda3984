//! `/healthz` and `/readyz`: what a load balancer or service manager asks a
//! hub, without credentials, and what the answer is when its database goes.

use lookout_testkit::postgres::{fresh_database, pg_server};
use lookout_testkit::spawn_hub_with;
use serde_json::Value;
use sqlx::Connection as _;

#[tokio::test(flavor = "multi_thread")]
async fn probes_answer_without_credentials_and_readiness_follows_the_database() {
    let database = fresh_database().await;
    let url = database.clone();
    // Authentication required: probes still answer.
    let hub = spawn_hub_with(move |c| {
        c.database = lookout_hub::config::DatabaseUrl::Postgres(url.clone());
        c.auth.mode = lookout_hub::auth::AuthMode::Required;
    })
    .await;
    assert_eq!(hub.get("/api/services").await.status(), 401);
    let r = hub.get("/healthz").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ok");
    let r = hub.get("/readyz").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["database"], "ok");

    // The database goes away (dropped, its connections cut): still alive,
    // no longer ready.
    let name = database.rsplit('/').next().unwrap().to_owned();
    let mut admin = sqlx::PgConnection::connect(&pg_server().url("postgres"))
        .await
        .unwrap();
    sqlx::query(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
    assert_eq!(hub.get("/healthz").await.status(), 200);
    let r = hub.get("/readyz").await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "unavailable", "{body}");
    assert!(
        !body.to_string().contains("postgres://"),
        "the answer names no connection details: {body}"
    );
}

/// A background task that ends while the hub runs (a bug, a panic) does not
/// leave the hub half alive: `/readyz` fails, then the hub stops with an
/// error naming the task (the `serve` command then exits non-zero).
#[tokio::test(flavor = "multi_thread")]
async fn a_background_task_that_dies_fails_readiness_and_stops_the_hub() {
    let dir = tempfile::tempdir().unwrap();
    let config = lookout_hub::Config::with_data_dir(
        "127.0.0.1:0".parse().unwrap(),
        dir.path().to_path_buf(),
    );
    let mut app = lookout_hub::app::Application::build(config).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let (die, dying) = tokio::sync::oneshot::channel::<()>();
    app.supervise("test task", async move {
        let _ = dying.await;
        panic!("a bug in a background task");
    });
    let running = tokio::spawn(app.run_until(std::future::pending()));
    let client = reqwest::Client::new();
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    die.send(()).unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    let body: Value = loop {
        let r = client.get(format!("{base}/readyz")).send().await.unwrap();
        if r.status() == 503 {
            break r.json().await.unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "still ready");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(body["failed"], "test task", "{body}");
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(10), running)
        .await
        .expect("the hub stopped")
        .unwrap();
    let error = stopped
        .expect_err("the hub stops with an error")
        .to_string();
    assert_eq!(error, "the test task panicked; the hub stopped");
    // And it no longer answers.
    assert!(client.get(format!("{base}/healthz")).send().await.is_err());
}
