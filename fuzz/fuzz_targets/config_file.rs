//! The hub's config file, from its text to a validated configuration: never
//! a panic; every error is one line, and one about a value names the file;
//! a value means the same in the file as in a `LOOKOUT_*` variable; an
//! accepted configuration keeps its promises (authentication off only on
//! loopback unless the loud flag says so, no zero periods, no password in
//! the database's display name).
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use lookout_config::{
    as_text, read_file, AuthMode, Config, DatabaseUrl, Origin, RawValue, INSECURE_FLAG,
};

const PATH: &str = "/etc/lookout/lookout.toml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new(PATH);
    let table = match read_file(text, path) {
        Ok(table) => table,
        Err(e) => {
            assert!(!e.0.contains('\n'), "not one line: {e}");
            assert!(e.0.contains(&format!("config file {PATH}")), "{e}");
            return;
        }
    };
    // The same values as LOOKOUT_* variables; a table has no text form.
    let mut as_env: BTreeMap<&'static str, RawValue> = BTreeMap::new();
    for (key, value) in &table {
        let Some(spec) = lookout_config::SETTINGS.iter().find(|s| s.key == key) else {
            panic!("read_file took an unknown setting {key:?}");
        };
        let Some(text) = as_text(value) else {
            // Refused from the file, naming it.
            let e = Config::from_sources(Some((path, &table)), &BTreeMap::new()).unwrap_err();
            assert!(e.0.contains(&format!("in config file {PATH}")), "{e}");
            return;
        };
        as_env.insert(
            spec.key,
            RawValue {
                value: text,
                origin: Origin::Env,
            },
        );
    }
    match (
        Config::from_sources(Some((path, &table)), &BTreeMap::new()),
        Config::from_sources(None, &as_env),
    ) {
        (Ok(config), Ok(from_env)) => {
            assert_eq!(format!("{config:?}"), format!("{from_env:?}"));
            promises(&config, &as_env);
        }
        (Err(e), Err(from_env)) => {
            assert!(!e.0.contains('\n'), "not one line: {e}");
            // An error about one value names its source; one that reads
            // the same from any source is about settings together.
            assert!(
                e.0 == from_env.0 || e.0.contains(&format!("in config file {PATH}")),
                "{e}"
            );
        }
        (file, env) => panic!("the file says {file:?}, the environment {env:?}"),
    }
});

fn promises(config: &Config, layer: &BTreeMap<&'static str, RawValue>) {
    let loopback = config.listen.ip().is_loopback();
    if config.auth.mode == AuthMode::Off && !loopback {
        let insecure = layer.get(INSECURE_FLAG).map(|v| v.value.trim());
        assert!(
            matches!(insecure, Some("true" | "1" | "yes")),
            "{insecure:?}"
        );
    }
    assert_eq!(config.auth.loopback, loopback);
    assert_eq!(config.auth.tls, config.tls.is_some());
    for period in [
        config.checks.interval,
        config.checks.timeout,
        config.agents.heartbeat,
        config.cluster.check_lease,
        config.heartbeat_ttl,
        config.retention,
    ] {
        assert!(!period.is_zero());
    }
    assert!(config.checks.concurrency >= 1);
    if let DatabaseUrl::Postgres(_) = &config.database {
        let shown = config.database.display();
        if let Ok(url) = url::Url::parse(&shown) {
            assert!(matches!(url.password(), None | Some("***")), "{shown}");
        }
    }
}
