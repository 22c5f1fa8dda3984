//! Public status pages as requests describe them: a slug for the address
//! (`/status/{slug}`), a title, the services shown (by id or name, or by
//! tag) and a notice. Pure: whether a named service exists is the
//! registry's to judge.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::depends::{parse_depends_on, ServiceRef};
use crate::FieldError;

/// The fields a status page takes.
pub const FIELDS: [&str; 6] = ["slug", "title", "description", "services", "tags", "notice"];

/// Slugs that would shadow the page's own sub-routes.
const RESERVED: [&str; 2] = ["badge", "new"];

/// A status page as a request sets it, checked but with its services not
/// yet resolved to ids.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatusPageSpec {
    pub slug: String,
    pub title: String,
    pub description: String,
    pub services: Vec<ServiceRef>,
    pub tags: Vec<String>,
    pub notice: String,
}

/// A status page as stored and as the API shows it to administrators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusPageView {
    pub id: i64,
    /// The page's address: `/status/{slug}`.
    pub slug: String,
    pub title: String,
    pub description: String,
    /// The services shown, by id.
    pub services: Vec<i64>,
    /// Every service with one of these tags is shown too.
    pub tags: Vec<String>,
    /// A notice shown above the services (planned work, an outage being
    /// handled); empty for none.
    pub notice: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// A slug is 1-64 of `a-z`, `0-9` and `-`, not starting or ending with `-`.
pub fn valid_slug(slug: &str) -> bool {
    (1..=64).contains(&slug.len())
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-')
        && !RESERVED.contains(&slug)
}

fn text(
    body: &Map<String, Value>,
    key: &str,
    required: bool,
    max: usize,
    multiline: bool,
    errors: &mut Vec<FieldError>,
) -> String {
    let what = if multiline { "text" } else { "one line" };
    match body.get(key) {
        None | Some(Value::Null) if !required => String::new(),
        Some(Value::String(s))
            if s.trim().chars().count() <= max
                && !(required && s.trim().is_empty())
                && !s
                    .chars()
                    .any(|c| c.is_control() && !(multiline && (c == '\n' || c == '\r'))) =>
        {
            s.trim().to_owned()
        }
        _ => {
            let need = if required {
                "is required: "
            } else {
                "must be "
            };
            errors.push(FieldError::new(
                key,
                format!("{need}{what} of at most {max} characters"),
            ));
            String::new()
        }
    }
}

/// Checks a status page from a JSON object, as the API and the form send it,
/// reporting every offending field at once.
pub fn parse_status_page(body: &Map<String, Value>) -> Result<StatusPageSpec, Vec<FieldError>> {
    let mut errors: Vec<FieldError> = body
        .keys()
        .filter(|k| !FIELDS.contains(&k.as_str()))
        .map(|k| FieldError::new(k.clone(), "is not a field of a status page"))
        .collect();
    let slug = match body.get("slug").and_then(Value::as_str).map(str::trim) {
        Some(s) if valid_slug(s) => s.to_owned(),
        given => {
            let need = if given.is_none_or(str::is_empty) {
                "is required: "
            } else {
                "must be "
            };
            errors.push(FieldError::new(
                "slug",
                format!(
                    "{need}1 to 64 lowercase letters, digits and dashes (not \"badge\" or \"new\")"
                ),
            ));
            String::new()
        }
    };
    let title = text(body, "title", true, 100, false, &mut errors);
    let description = text(body, "description", false, 500, true, &mut errors);
    let notice = text(body, "notice", false, 1000, true, &mut errors);
    let services = match body.get("services") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => parse_depends_on(v).unwrap_or_else(|e| {
            errors.push(FieldError::new("services", e));
            Vec::new()
        }),
    };
    let tags = match body.get("tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) if items.len() <= 20 => {
            let mut tags: Vec<String> = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item.as_str().map(str::trim) {
                    Some(t) if !t.is_empty() && t.len() <= 50 && !t.contains(char::is_control) => {
                        if !tags.iter().any(|x| x == t) {
                            tags.push(t.to_owned());
                        }
                    }
                    _ => errors.push(FieldError::new(
                        format!("tags[{i}]"),
                        "must be a tag: 1 to 50 characters",
                    )),
                }
            }
            tags
        }
        Some(_) => {
            errors.push(FieldError::new("tags", "must be a list of at most 20 tags"));
            Vec::new()
        }
    };
    if errors.is_empty() && services.is_empty() && tags.is_empty() {
        errors.push(FieldError::new(
            "services",
            "name at least one service, or a tag in tags",
        ));
    }
    if errors.is_empty() {
        Ok(StatusPageSpec {
            slug,
            title,
            description,
            services,
            tags,
            notice,
        })
    } else {
        Err(errors)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<StatusPageSpec, Vec<FieldError>> {
        parse_status_page(v.as_object().unwrap())
    }

    #[test]
    fn a_page_names_services_by_id_or_name_and_tags() {
        let page = parse(json!({
            "slug": "home", "title": "Home services", "services": [3, "jellyfin", 3],
            "tags": ["media", "media"], "notice": "Router swap on Sunday\n10:00",
        }))
        .unwrap();
        assert_eq!(page.slug, "home");
        assert_eq!(
            page.services,
            vec![ServiceRef::Id(3), ServiceRef::Name("jellyfin".into())]
        );
        assert_eq!(page.tags, vec!["media".to_owned()]);
        assert_eq!(page.notice, "Router swap on Sunday\n10:00");
    }

    #[test]
    fn every_bad_field_is_named_at_once() {
        let errors = parse(json!({
            "slug": "Home Page", "title": "", "services": "all", "tags": [""], "url": "x",
        }))
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["url", "slug", "title", "services", "tags[0]"]);
        for slug in ["badge", "-a", "a-", "", "é"] {
            assert!(!valid_slug(slug), "{slug}");
        }
        assert!(valid_slug("family-2"));
        let empty = parse(json!({"slug": "x", "title": "X"})).unwrap_err();
        assert_eq!(empty[0].field, "services");
    }
}
