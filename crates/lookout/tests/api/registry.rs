//! The registry: services in memory, read without SQL, changed only through
//! it; the list served from kept bytes with an `ETag`, and its filters.

use std::sync::Arc;

use lookout_hub::config::CheckDefaults;
use lookout_hub::events::{CheckOutcome, Event, EventBus};
use lookout_hub::registry::{ListFilter, Point, Registry, RECENT};
use lookout_hub::store::Store;
use lookout_proto::service::HealthStatus;
use lookout_proto::status::Status;
use reqwest::header::{ETAG, IF_NONE_MATCH};
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::store::{at, failed, new_service, open, passed, patch};

/// Once loaded, reads answer from memory: they still answer with the
/// database closed, and every write before shows in them.
#[tokio::test(flavor = "multi_thread")]
async fn reads_answer_from_memory_and_show_every_write() {
    let (store, _db) = open().await;
    let store: Arc<dyn Store> = Arc::new(store);
    let bus = EventBus::new(1024);
    let mut heard = bus.subscribe();
    let registry = Registry::load(store.clone(), bus, CheckDefaults::default(), at(0))
        .await
        .unwrap();
    let (web, _) = registry
        .create(
            &new_service(
                json!({"name": "Web", "base_url": "http://127.0.0.1:9", "health_endpoint": "/h"}),
            ),
            at(0),
        )
        .await
        .unwrap();
    let (api, _) = registry
        .create(&new_service(json!({"name": "api"})), at(1))
        .await
        .unwrap();
    let before = registry.version();
    registry
        .record_health_check(&passed(&web, 2, 12))
        .await
        .unwrap();
    assert!(registry.version() > before, "a check result is a change");
    registry
        .update(api.id, &patch(json!({"description": "the API"})), at(3))
        .await
        .unwrap()
        .unwrap();
    assert!(registry.delete(api.id, at(4)).await.unwrap());
    let (db, _) = registry
        .create(&new_service(json!({"name": "db"})), at(4))
        .await
        .unwrap();

    // Each change was published once, in order, typed, by the registry.
    let mut events = vec![];
    while let Ok(event) = heard.try_recv() {
        events.push(Event::clone(&event));
    }
    // A service's own events carry it as the API shows it, as it was then.
    let carried = |e: &Event| match e {
        Event::ServiceCreated { service, .. } | Event::ServiceUpdated { service, .. } => service
            .as_ref()
            .and_then(|s| s.view())
            .map(|s| (s.id, s.name.clone(), s.description.clone())),
        _ => None,
    };
    assert_eq!(
        events.iter().map(carried).collect::<Vec<_>>(),
        [
            Some((web.id, "Web".into(), None)),
            Some((api.id, "api".into(), None)),
            None,
            None,
            Some((api.id, "api".into(), Some("the API".into()))),
            None,
            Some((db.id, "db".into(), None)),
        ]
    );
    assert_eq!(
        events,
        [
            events[0].clone(),
            events[1].clone(),
            // A check's event carries what it left on the service, as
            // memory holds it.
            Event::HealthChecked {
                id: web.id,
                status: HealthStatus::Healthy,
                outcome: CheckOutcome::of(&registry.get(web.id).unwrap().service),
            },
            Event::StatusChanged(Box::new(events[3].status_change().unwrap().clone())),
            events[4].clone(),
            Event::ServiceDeleted { id: api.id },
            events[6].clone(),
        ]
    );
    // The service in its event is the one the API shows, whole.
    let Event::ServiceCreated {
        id,
        service: Some(carried),
    } = &events[0]
    else {
        panic!("the first event is web's creation: {:?}", events[0]);
    };
    assert_eq!(
        (*id, carried.view()),
        (web.id, Some(web.to_view(&CheckDefaults::default())))
    );
    let up = events[3].status_change().unwrap();
    assert_eq!(
        (up.service_id, up.old, up.new),
        (web.id, Status::Unknown, Status::Ok)
    );

    // Each service's recent results are kept, the newest RECENT of them, and
    // a registry loaded later reads the same ones back from the history.
    for i in 0..(RECENT as i64 + 5) {
        registry
            .record_health_check(&passed(&web, 10 + i, 100 + i as u64))
            .await
            .unwrap();
    }
    let latencies = |points: Vec<Point>| -> Vec<u64> {
        points.into_iter().filter_map(|(_, ms, _)| ms).collect()
    };
    let kept = latencies(registry.recent(web.id, at(0)));
    let expected: Vec<u64> = (0..RECENT as u64 + 5).map(|i| 100 + i).skip(5).collect();
    assert_eq!(kept, expected, "the newest {RECENT}, oldest first");
    assert_eq!(
        latencies(registry.recent(web.id, at(10 + 50))),
        expected[45..],
        "since a time"
    );
    let reloaded = Registry::load(
        store.clone(),
        EventBus::new(16),
        CheckDefaults::default(),
        at(100),
    )
    .await
    .unwrap();
    assert_eq!(latencies(reloaded.recent(web.id, at(0))), expected);

    // The uptime figures are in memory too, and agree with the history.
    registry
        .record_health_check(&failed(&web, 1000, 500))
        .await
        .unwrap();
    registry
        .record_health_check(&passed(&web, 1500, 154))
        .await
        .unwrap();
    let uptime = registry.uptimes(web.id, at(2000));
    let from_history = Registry::load(
        store.clone(),
        EventBus::new(16),
        CheckDefaults::default(),
        at(2000),
    )
    .await
    .unwrap()
    .uptimes(web.id, at(2000));
    assert_eq!(uptime, from_history);
    let day = uptime.day.unwrap();
    assert!(day > 0.5 && day < 1.0, "{uptime:?}");

    store.close().await;
    assert_eq!(registry.uptimes(web.id, at(2000)), uptime);
    assert_eq!(latencies(registry.recent(web.id, at(0))).len(), RECENT);
    let names: Vec<String> = registry
        .services(&ListFilter::configured())
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["db", "Web"], "by name, ignoring case");
    let web_now = registry.get(web.id).unwrap();
    assert_eq!(web_now.service.state, Status::Ok);
    assert_eq!(web_now.service.last_latency_ms, Some(154));
    assert!(registry.get(api.id).is_none(), "deleted");
    let (_, body) = registry.list_json(&ListFilter::configured());
    let listed: Vec<Value> = serde_json::from_slice(&body).unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1]["id"], web.id);
    assert_eq!(listed[1]["state"], "OK");
    assert_eq!(listed[1]["last_latency_ms"], 154);
    // A write with the database gone fails and leaves memory as it was.
    assert!(registry.delete(db.id, at(9)).await.is_err());
    assert!(registry.get(db.id).is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_list_answers_304_until_it_changes_is_gzipped_on_request_and_filters() {
    let hub = lookout_testkit::spawn_hub().await;
    let closed = lookout_testkit::closed_port();
    let up = lookout_testkit::Target::start(200).await;
    let jellyfin = hub
        .create_service(
            json!({"name": "Jellyfin", "base_url": up.url(), "health_endpoint": "/health"}),
        )
        .await;
    let down = hub
        .create_service(json!({"name": "jellyseerr", "base_url": format!("http://127.0.0.1:{closed}"), "health_endpoint": "/"}))
        .await;
    let down_id = down["id"].as_i64().unwrap();
    hub.wait_for_service(down_id, std::time::Duration::from_secs(10), |s| {
        s["state"] == "FAILURE"
    })
    .await;
    // Both checked (their next checks are 30 s away): the list holds still.
    let jellyfin = jellyfin["id"].as_i64().unwrap();
    hub.wait_for_service(jellyfin, std::time::Duration::from_secs(10), |s| {
        s["state"] == "OK"
    })
    .await;

    let r = hub.get("/api/services").await;
    assert_eq!(r.status(), 200);
    let tag = r.headers()[ETAG].to_str().unwrap().to_owned();
    let first: Vec<Value> = r.json().await.unwrap();
    assert_eq!(first.len(), 2);
    // The same list again: 304, no body.
    let again = hub
        .client
        .get(hub.url("/api/services"))
        .header(IF_NONE_MATCH, &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()[ETAG].to_str().unwrap(), tag);
    assert!(again.bytes().await.unwrap().is_empty());
    // A client that accepts brotli gets the same list in brotli, one that
    // accepts gzip only gets it gzipped, each under a tag of its own; every
    // tag of this version is a 304.
    let brotli = hub
        .client
        .get(hub.url("/api/services"))
        .header("accept-encoding", "br;q=1.0, gzip;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(brotli.status(), 200);
    assert_eq!(brotli.headers()["content-encoding"], "br");
    let br_tag = brotli.headers()[ETAG].to_str().unwrap().to_owned();
    assert_ne!(br_tag, tag);
    let packed = brotli.bytes().await.unwrap();
    let mut unpacked = Vec::new();
    brotli::BrotliDecompress(&mut &packed[..], &mut unpacked).unwrap();
    assert_eq!(
        serde_json::from_slice::<Vec<Value>>(&unpacked).unwrap(),
        first
    );
    let gzipped = hub
        .client
        .get(hub.url("/api/services"))
        .header("accept-encoding", "gzip, deflate, br;q=0")
        .send()
        .await
        .unwrap();
    assert_eq!(gzipped.status(), 200);
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    assert_eq!(gzipped.headers()["vary"], "accept-encoding");
    let gz_tag = gzipped.headers()[ETAG].to_str().unwrap().to_owned();
    assert_ne!(gz_tag, tag);
    let packed = gzipped.bytes().await.unwrap();
    let mut unpacked = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&packed[..]),
        &mut unpacked,
    )
    .unwrap();
    assert_eq!(
        serde_json::from_slice::<Vec<Value>>(&unpacked).unwrap(),
        first
    );
    assert_ne!(gz_tag, br_tag);
    for (accept, tag_sent) in [
        ("gzip", &gz_tag),
        ("identity", &tag),
        ("gzip", &tag),
        ("br", &br_tag),
        ("gzip", &br_tag),
    ] {
        let r = hub
            .client
            .get(hub.url("/api/services"))
            .header("accept-encoding", accept)
            .header(IF_NONE_MATCH, tag_sent)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED, "{accept} {tag_sent}");
    }
    // gzip refused (q=0) is plain.
    let plain = hub
        .client
        .get(hub.url("/api/services"))
        .header("accept-encoding", "gzip;q=0, identity")
        .send()
        .await
        .unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    assert_eq!(plain.json::<Vec<Value>>().await.unwrap(), first);
    // A change makes a new list.
    hub.create_service(json!({"name": "paperless"})).await;
    let changed = hub
        .client
        .get(hub.url("/api/services"))
        .header(IF_NONE_MATCH, &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    assert_ne!(changed.headers()[ETAG].to_str().unwrap(), tag);

    assert_eq!(
        names(hub.get_json("/api/services?state=FAILURE").await),
        ["jellyseerr"]
    );
    assert_eq!(
        names(hub.get_json("/api/services?q=JELLY").await),
        ["Jellyfin", "jellyseerr"]
    );
    assert_eq!(
        names(hub.get_json("/api/services?q=paper&state=UNKNOWN").await),
        ["paperless"]
    );
    assert!(names(hub.get_json("/api/services?server=1").await).is_empty());
    // A filter that is not one is named.
    let r = hub.get("/api/services?state=DOWN&server=x").await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    let fields: Vec<&str> = body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["state", "server"], "{body}");
}

/// Tags: kept as typed, each once whatever its case, changed and cleared
/// by an update, refused with the offending entry named; the list filters
/// by tag and by what watches each service.
#[tokio::test(flavor = "multi_thread")]
async fn services_are_tagged_and_filtered_by_tag_and_kind() {
    let hub = lookout_testkit::spawn_hub().await;
    let jellyfin = hub
        .create_service(json!({"name": "Jellyfin", "base_url": "http://127.0.0.1:9",
                               "tags": [" Media ", "home lab", "media"]}))
        .await;
    assert_eq!(jellyfin["tags"], json!(["Media", "home lab"]));
    let id = jellyfin["id"].as_i64().unwrap();
    hub.create_service(
        json!({"name": "db", "base_url": "tcp://127.0.0.1:9", "tags": ["home lab"]}),
    )
    .await;
    hub.create_service(json!({"name": "notes"})).await;
    assert_eq!(
        names(hub.get_json("/api/services?tag=media").await),
        ["Jellyfin"]
    );
    assert_eq!(
        names(hub.get_json("/api/services?tag=HOME%20LAB").await),
        ["db", "Jellyfin"]
    );
    assert_eq!(names(hub.get_json("/api/services?kind=tcp").await), ["db"]);
    assert_eq!(
        names(hub.get_json("/api/services?kind=none").await),
        ["notes"]
    );
    assert_eq!(
        names(hub.get_json("/api/services?kind=http&tag=home%20lab").await),
        ["Jellyfin"]
    );

    // Changed, then cleared.
    let r = hub
        .put_json(&format!("/api/services/{id}"), &json!({"tags": ["films"]}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(hub.service(id).await["tags"], json!(["films"]));
    hub.put_json(&format!("/api/services/{id}"), &json!({"tags": null}))
        .await;
    assert!(
        hub.service(id).await.get("tags").is_none(),
        "no tags, no field"
    );

    // Refused, naming the field; nothing written.
    for bad in [
        json!("media"),
        json!(["ok", ""]),
        json!(["a,b"]),
        json!([7]),
    ] {
        let r = hub
            .put_json(&format!("/api/services/{id}"), &json!({"tags": bad}))
            .await;
        assert_eq!(r.status(), 422, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["fields"][0]["field"], "tags", "{body}");
    }
    let r = hub.get("/api/services?kind=carrier-pigeon").await;
    assert_eq!(r.status(), 400);
    assert!(hub.service(id).await.get("tags").is_none());
}

/// The names in a list of services, in its order.
fn names(list: Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The store's shorthands for some of [`SERVICE_WRITES`] (one result, the
/// service without its change): nobody but the registry calls them either.
const SHORTHANDS: &[&str] = &[
    "create_service",
    "update_service",
    "record_health_check",
    "record_results",
];

/// The store methods that change services, called by the registry alone.
const SERVICE_WRITES: &[&str] = &[
    "register_service",
    "change_service",
    "delete_service",
    "record_health_checks",
    "reconcile_state",
    "apply_scan",
    "set_unit_state",
    "set_unit_link",
    "delete_removed",
    "heartbeat",
    "overdue",
    "remove_silent_heartbeats",
    "set_push_token",
    "record_push",
    "set_server_checks",
    "record_results_together",
    "agent_seen",
    "revoke_server",
    "delete_server",
];

/// Every Rust file under `dir`, with its text.
fn sources(dir: &std::path::Path) -> Vec<(std::path::PathBuf, String)> {
    let mut found = vec![];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            found.push((path, text));
        }
    }
    found
}

/// The text before the file's unit tests, which may set up a store directly.
fn shipped(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or(text)
}

#[test]
fn no_module_but_the_registry_changes_services_in_the_store() {
    let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let files = [
        sources(&crates.join("core/src")),
        sources(&crates.join("hub/src")),
    ]
    .concat();
    assert!(files.len() > 30, "read the hub's sources: {}", files.len());
    let mut offenders = vec![];
    for (path, text) in &files {
        if path.ends_with("registry.rs") {
            continue;
        }
        // `store.method(` possibly split over lines, as rustfmt writes it.
        let flat: String = shipped(text).split_whitespace().collect();
        for method in SERVICE_WRITES.iter().chain(SHORTHANDS) {
            if flat.contains(&format!("store.{method}(")) {
                offenders.push(format!("{} calls store.{method}", path.display()));
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
    let registry = std::fs::read_to_string(crates.join("core/src/registry.rs")).unwrap();
    let flat: String = registry.split_whitespace().collect();
    for method in SERVICE_WRITES {
        assert!(
            flat.contains(&format!("store.{method}(")),
            "the registry has a way to call {method}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_follow_link_headers_and_survive_a_deletion() {
    let hub = lookout_testkit::spawn_hub().await;
    let mut ids = vec![];
    for name in ["alpha", "Bravo", "charlie", "delta", "Echo"] {
        ids.push(
            hub.create_service(json!({"name": name})).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    let mut seen = vec![];
    let mut next = Some("/api/services?limit=2".to_owned());
    let mut pages = 0;
    while let Some(path) = next.take() {
        let r = hub.get(&path).await;
        assert_eq!(r.status(), 200, "{path}");
        next = r.headers().get("link").map(|link| {
            let link = link.to_str().unwrap();
            assert!(link.ends_with(">; rel=\"next\""), "{link}");
            link[1..link.find('>').unwrap()].to_owned()
        });
        let page: Vec<Value> = r.json().await.unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|s| s["name"].as_str().unwrap().to_owned()));
        pages += 1;
        if pages == 1 {
            // The service a page ended on goes; the next page goes on after it.
            let r = hub
                .client
                .delete(hub.url(&format!("/api/services/{}", ids[1])))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 204);
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["alpha", "Bravo", "charlie", "delta", "Echo"]);
    // Filters hold across pages; bad paging is named.
    let r = hub.get("/api/services?limit=1&q=e").await;
    let link = r.headers()["link"].to_str().unwrap().to_owned();
    assert!(link.contains("q=e"), "{link}");
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=2&after=zz", "after"),
    ] {
        let r = hub.get(&format!("/api/services?{query}")).await;
        assert_eq!(r.status(), 400, "{query}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["fields"][0]["field"], field, "{query}: {body}");
    }
    // A cursor alone pages by the largest page: what follows "a".
    let r = hub.get("/api/services?after=61.1").await;
    assert_eq!(r.status(), 200);
    let names: Vec<Value> = r.json::<Vec<Value>>().await.unwrap();
    assert_eq!(names.len(), 4, "{names:?}");
}

/// Every change is announced by the registry, after memory has it: no
/// handler, task or session publishes events of its own (the log follower
/// only passes on what other hubs logged).
#[test]
fn no_module_but_the_registry_publishes_changes() {
    let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut offenders = vec![];
    let files = [
        sources(&crates.join("core/src")),
        sources(&crates.join("hub/src")),
    ]
    .concat();
    assert!(files.iter().any(|(path, _)| path.ends_with("registry.rs")));
    for (path, text) in &files {
        if path.ends_with("registry.rs") || path.ends_with("events.rs") {
            continue;
        }
        let flat: String = shipped(text).split_whitespace().collect();
        for call in [
            ".publish(Event::",
            ".publish(crate::events::Event::",
            ".publish_changes(",
        ] {
            if flat.contains(call) {
                offenders.push(format!("{} calls {call}", path.display()));
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
}

/// The crates depend only downward: web (`lookout-hub`) → core
/// (`lookout-core`) → store → config → proto, with systemd, containers and
/// usage beside the store;
/// the core knows nothing of HTTP serving (no axum, hyper, tower or
/// templates), so no route, guard, page or error type can be reached from it.
#[test]
fn the_layers_point_down() {
    let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // What each layer may use of the workspace and of the HTTP server stack.
    let allowed: &[(&str, &[&str])] = &[
        ("proto", &[]),
        ("config", &["lookout-proto"]),
        ("systemd", &["lookout-proto"]),
        ("containers", &["lookout-proto"]),
        ("usage", &["lookout-proto"]),
        ("store", &["lookout-proto", "lookout-config"]),
        (
            "core",
            &[
                "lookout-proto",
                "lookout-config",
                "lookout-store",
                "lookout-systemd",
                "lookout-containers",
                "lookout-usage",
            ],
        ),
        (
            "hub",
            &[
                "lookout-proto",
                "lookout-config",
                "lookout-store",
                "lookout-systemd",
                "lookout-core",
            ],
        ),
    ];
    let web = [
        "axum",
        "hyper",
        "hyper-util",
        "tower",
        "tower-http",
        "askama",
    ];
    let mut offenders = vec![];
    for (krate, may) in allowed {
        let manifest = std::fs::read_to_string(crates.join(krate).join("Cargo.toml")).unwrap();
        let deps = manifest
            .split("[dependencies]")
            .nth(1)
            .unwrap()
            .split("\n[")
            .next()
            .unwrap();
        for line in deps.lines() {
            let name = line.split(['.', ' ', '=']).next().unwrap_or("").trim();
            if name.starts_with("lookout-") && !may.contains(&name) {
                offenders.push(format!("{krate} depends on {name}"));
            }
            if *krate != "hub" && web.contains(&name) {
                offenders.push(format!("{krate} depends on the web stack ({name})"));
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
}

/// `unsafe` is denied in every crate; the one place allowed to use it is
/// the binary's malloc tuning (`limit_malloc_arenas` in `main.rs`).
#[test]
fn unsafe_code_is_allowed_in_one_place() {
    let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let allowed: Vec<String> = sources(&crates)
        .into_iter()
        .flat_map(|(path, text)| {
            let path = path.display().to_string();
            text.lines()
                .filter(|l| l.contains("allow(unsafe_code)"))
                .map(|_| path.clone())
                .collect::<Vec<_>>()
        })
        .filter(|p| !p.ends_with("tests/api/registry.rs"))
        .collect();
    assert_eq!(allowed.len(), 1, "{allowed:#?}");
    assert!(
        allowed[0].ends_with("lookout/src/malloc.rs"),
        "{allowed:#?}"
    );
    let workspace = std::fs::read_to_string(crates.join("../Cargo.toml")).unwrap();
    assert!(workspace.contains("unsafe_code = \"deny\""));
}

/// Outside tests no crate unwraps: every crate of the product denies
/// `unwrap` and `expect` in its root (tests and the test kit may), and each
/// `expect` allowed where an invariant makes it safe says why.
#[test]
fn shipped_code_does_not_unwrap() {
    let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let gate = "#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]";
    let roots = [
        "agent/src/lib.rs",
        "config/src/lib.rs",
        "containers/src/lib.rs",
        "core/src/lib.rs",
        "hub/src/lib.rs",
        "proto/src/lib.rs",
        "store/src/lib.rs",
        "systemd/src/lib.rs",
        "usage/src/lib.rs",
        "lookout/src/main.rs",
    ];
    for root in roots {
        let text = std::fs::read_to_string(crates.join(root)).unwrap();
        assert!(
            text.contains(gate),
            "{root} does not deny unwrap and expect"
        );
    }
    // The crates listed are all the crates there are, but the test kit.
    let mut found: Vec<String> = std::fs::read_dir(&crates)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "testkit")
        .collect();
    found.sort();
    let mut listed: Vec<String> = roots
        .iter()
        .map(|r| r.split('/').next().unwrap().to_owned())
        .collect();
    listed.sort();
    assert_eq!(found, listed);
    for (path, text) in sources(&crates) {
        if path.ends_with("tests/api/registry.rs") {
            continue;
        }
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.contains("allow(") && line.contains("clippy::expect_used") {
                let attribute = lines[i..lines.len().min(i + 4)].join(" ");
                assert!(
                    attribute.contains("reason = "),
                    "{}:{}: an allowed expect without a reason",
                    path.display(),
                    i + 1
                );
            }
        }
    }
}

/// Every API answer names the event it speaks for (`X-Lookout-Event`): a
/// write that asks for it (`X-Lookout-Min-Event`) the event it caused, once
/// logged. A request that names an event is answered once the hub has
/// applied it, or told to retry after a second; a bad value is named.
#[tokio::test(flavor = "multi_thread")]
async fn answers_name_their_event_and_wait_for_the_one_asked_for() {
    let hub = lookout_testkit::spawn_hub().await;
    let event_of = |r: &reqwest::Response| -> i64 {
        r.headers()["x-lookout-event"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let r = hub
        .client
        .post(hub.url("/api/services"))
        .header("X-Lookout-Min-Event", "0")
        .json(&json!({"name": "ledger"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let written = event_of(&r);
    let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    // The id names the write's own event, already in the log.
    let mut feed =
        lookout_testkit::SseClient::connect(&hub.client, &hub.url("/api/events"), Some(0)).await;
    let created = feed
        .wait_for(std::time::Duration::from_secs(5), |m| {
            m.event == "service.created" && m.data["service"]["id"] == id
        })
        .await;
    assert!(
        created.id.unwrap() <= written,
        "{created:?} after {written}"
    );

    let read = hub
        .client
        .get(hub.url(&format!("/api/services/{id}")))
        .header("X-Lookout-Min-Event", written.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    assert!(event_of(&read) >= written);

    let started = std::time::Instant::now();
    let ahead = hub
        .client
        .get(hub.url("/api/services"))
        .header("X-Lookout-Min-Event", (written + 1000).to_string())
        .send()
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(ahead.status(), 503);
    assert_eq!(ahead.headers()["retry-after"], "1");
    assert!(
        waited >= std::time::Duration::from_millis(900),
        "{waited:?}"
    );
    let body: Value = ahead.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("not yet"),
        "{body}"
    );

    for bad in ["soon", "-1", "1.5"] {
        let r = hub
            .client
            .get(hub.url("/api/services"))
            .header("X-Lookout-Min-Event", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["fields"][0]["field"], "X-Lookout-Min-Event", "{body}");
    }
}
