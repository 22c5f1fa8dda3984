//! A ping on a push URL, which anyone who knows (or guesses) a token can
//! send: never a panic, whatever the path suffix, query and body; a message
//! kept is never longer than the limit.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use lookout_proto::push::{Ping, MESSAGE_MAX_CHARS};

fuzz_target!(|data: &[u8]| {
    // The first line is the path suffix (empty: none), the second the
    // query, the rest the body.
    let mut parts = data.splitn(3, |b| *b == b'\n');
    let suffix = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let query = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let body = parts.next().unwrap_or_default();
    let query: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let suffix = (!suffix.is_empty()).then_some(suffix.as_str());
    match Ping::parse(suffix, &query, body) {
        Ok(Ping::Result {
            message: Some(m), ..
        }) => assert!(m.chars().count() <= MESSAGE_MAX_CHARS),
        Ok(_) => {}
        Err(errors) => assert!(!errors.is_empty()),
    }
});
