//! The layers a hub's settings come from, merged by figment: the config
//! file's table, then `LOOKOUT_*` variables, then flags (the last one that
//! sets a key wins). Each setting is read through serde as text (a TOML
//! string, number, boolean, or a list of them) and keeps the layer that set
//! it, so an error names `--flag`, `LOOKOUT_FLAG` or `key in config file
//! PATH` in one line.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::{ConfigError, Origin, RawValue, SETTINGS};

/// The name of the flags' layer.
const FLAGS: &str = "command-line flags";
/// The name of the variables' layer.
const ENV: &str = "LOOKOUT_* variables";

/// One layer: its values and the name errors give it.
struct Layer {
    name: String,
    values: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.values.clone()))
    }
}

/// A setting's text: a string as it is, a number or boolean as written, a
/// list's items joined with commas (`watch = ["a.service", "b-*"]` means
/// `--watch a.service,b-*`).
struct Text(String);

/// Reads a scalar as text, and a list too when `lists`.
struct TextVisitor {
    lists: bool,
}

impl<'de> Visitor<'de> for TextVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(if self.lists {
            "a string, a number, true or false, or a list of them"
        } else {
            "a string, a number, true or false"
        })
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<String, A::Error> {
        if !self.lists {
            return Err(de::Error::invalid_type(de::Unexpected::Seq, &self));
        }
        let mut items = Vec::new();
        while let Some(Scalar(item)) = seq.next_element::<Scalar>()? {
            items.push(item);
        }
        Ok(items.join(","))
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor { lists: true }).map(Text)
    }
}

/// An item of a list setting: a string, number or boolean.
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor { lists: false }).map(Scalar)
    }
}

/// A config file's text as a table of known settings; a file that is not
/// TOML, or names a setting lookout does not have, is refused in one line.
pub fn read_file(text: &str, path: &Path) -> Result<toml::Table, ConfigError> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        // toml's message can span lines ("invalid string\nexpected ..."):
        // joined, so the error stays one line.
        let why: Vec<&str> = e
            .message()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        ConfigError(format!(
            "config file {} is not valid TOML: {}",
            path.display(),
            why.join("; ")
        ))
    })?;
    if let Some(key) = table.keys().find(|k| !SETTINGS.iter().any(|s| s.key == *k)) {
        return Err(ConfigError(format!(
            "unknown setting {key:?} in config file {} (known: {})",
            path.display(),
            SETTINGS
                .iter()
                .map(|s| s.key)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(table)
}

/// Every setting some layer sets, as text with the layer that set it: the
/// file's table (from [`read_file`]) under the flags and variables of
/// `overrides`.
pub fn merge(
    file: Option<(&Path, &toml::Table)>,
    overrides: &BTreeMap<&'static str, RawValue>,
) -> Result<BTreeMap<&'static str, RawValue>, ConfigError> {
    let mut figment = Figment::new();
    if let Some((path, table)) = file {
        let values = figment::providers::Serialized::defaults(table)
            .data()
            .map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))?
            .remove(&Profile::Default)
            .unwrap_or_default();
        figment = figment.merge(Layer {
            name: format!("config file {}", path.display()),
            values,
        });
    }
    let layer = |name: &str, origin: &Origin| Layer {
        name: name.to_owned(),
        values: overrides
            .iter()
            .filter(|(_, raw)| raw.origin == *origin)
            .map(|(key, raw)| ((*key).to_owned(), Value::from(raw.value.clone())))
            .collect(),
    };
    figment = figment.merge(layer(ENV, &Origin::Env));
    figment = figment.merge(layer(FLAGS, &Origin::Flag));
    let mut out = BTreeMap::new();
    for spec in SETTINGS {
        let origin = match figment.find_metadata(spec.key).map(|m| m.name.as_ref()) {
            None => continue,
            Some(FLAGS) => Origin::Flag,
            Some(ENV) => Origin::Env,
            Some(_) => match file {
                Some((path, _)) => Origin::File(PathBuf::from(path)),
                None => continue,
            },
        };
        match figment.extract_inner::<Text>(spec.key) {
            Ok(Text(value)) => {
                out.insert(spec.key, RawValue { value, origin });
            }
            Err(e) if e.missing() => {}
            Err(e) => {
                let source = match &origin {
                    Origin::Flag => spec.flag(),
                    Origin::Env => spec.env(),
                    Origin::File(p) => format!("{} in config file {}", spec.key, p.display()),
                };
                let why = e.kind.to_string();
                return Err(ConfigError(format!(
                    "invalid {source}: {}",
                    why.lines().collect::<Vec<_>>().join("; ")
                )));
            }
        }
    }
    Ok(out)
}

/// A TOML value as the text a `LOOKOUT_*` variable would give it (lists
/// joined with commas), `None` for a table or a date.
pub fn as_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Array(items) => items
            .iter()
            .map(|i| match i {
                toml::Value::Array(_) | toml::Value::Table(_) => None,
                other => as_text(other),
            })
            .collect::<Option<Vec<_>>>()
            .map(|items| items.join(",")),
        // A date is no setting's value, and the file refuses it too.
        toml::Value::Table(_) | toml::Value::Datetime(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> toml::Table {
        read_file(text, Path::new("/etc/l.toml")).unwrap()
    }

    fn raw(value: &str, origin: Origin) -> RawValue {
        RawValue {
            value: value.into(),
            origin,
        }
    }

    #[test]
    fn the_last_layer_wins_and_is_named() {
        let table =
            file("listen = \"0.0.0.0:1\"\ncheck_interval = 30\nwatch = [\"a.service\", \"b-*\"]\n");
        let mut overrides = BTreeMap::new();
        overrides.insert("check_interval", raw("45s", Origin::Env));
        overrides.insert("listen", raw("127.0.0.1:2", Origin::Flag));
        let merged = merge(Some((Path::new("/etc/l.toml"), &table)), &overrides).unwrap();
        assert_eq!(merged["listen"].value, "127.0.0.1:2");
        assert_eq!(merged["listen"].origin, Origin::Flag);
        assert_eq!(merged["check_interval"].value, "45s");
        assert_eq!(merged["check_interval"].origin, Origin::Env);
        assert_eq!(merged["watch"].value, "a.service,b-*");
        assert_eq!(
            merged["watch"].origin,
            Origin::File(PathBuf::from("/etc/l.toml"))
        );
        assert!(!merged.contains_key("database"));
    }

    #[test]
    fn a_value_of_the_wrong_shape_names_its_layer() {
        let table = file("[listen]\nip = 1\n");
        let e = merge(Some((Path::new("/etc/l.toml"), &table)), &BTreeMap::new()).unwrap_err();
        assert!(
            e.0.starts_with("invalid listen in config file /etc/l.toml:"),
            "{e}"
        );
        assert!(!e.0.contains('\n'), "{e}");
        let e = read_file("colour = 1\n", Path::new("/etc/l.toml")).unwrap_err();
        assert!(e.0.starts_with("unknown setting \"colour\""), "{e}");
    }
}
