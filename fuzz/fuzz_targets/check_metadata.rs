//! A check script's headers: never a panic; a name that parses makes valid
//! unit names, and every error names a header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lookout_proto::check::{parse_metadata, CheckName};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_metadata(text) {
        Ok(meta) => {
            assert!(CheckName::parse(meta.name.as_str()).is_ok());
            assert!(!meta.schedule.chars().any(char::is_control));
            assert!((1..=86_400).contains(&meta.timeout_secs));
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            assert!(errors
                .iter()
                .all(|e| !e.header.is_empty() && !e.message.is_empty()));
        }
    }
});
