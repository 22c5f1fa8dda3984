//! A check's output line: never a panic; what parses formats back to a line
//! that parses to the same status and message (cut to fit a line).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lookout_proto::check::{format_line, parse_line, LineTime};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(line) = parse_line(text) {
        if let LineTime::Zoned(t) = line.time {
            let again = parse_line(&format_line(t, line.status, &line.message))
                .expect("a formatted line parses");
            assert_eq!(again.status, line.status);
            // Long messages are cut to fit a line, never changed otherwise.
            assert!(line.message.trim().starts_with(again.message.trim_end()));
        }
    }
});
