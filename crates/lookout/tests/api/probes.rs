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
