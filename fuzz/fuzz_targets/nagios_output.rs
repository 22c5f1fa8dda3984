//! A Nagios plugin's exit code and output: never a panic; a result has a
//! non-empty message without a line break.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lookout_proto::check::parse_nagios;

fuzz_target!(|data: &[u8]| {
    let Some((&code, rest)) = data.split_first() else {
        return;
    };
    let Ok(output) = std::str::from_utf8(rest) else {
        return;
    };
    if let Ok(r) = parse_nagios(i32::from(code) - 1, output) {
        assert!(!r.message.is_empty());
        assert!(!r.message.contains('\n'));
    }
});
