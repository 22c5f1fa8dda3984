//! A condition as a user writes it (the API, a monitors file, the form):
//! never a panic, parsing or evaluating; what parses, parses again from its
//! own text to the same condition; evaluating never panics on any body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lookout_proto::condition::{Condition, Observation};
use lookout_proto::status::Status;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The input's first line is the condition, the rest a body to read.
    let (expr, body) = text.split_once('\n').unwrap_or((text, ""));
    let Ok(condition) = Condition::parse(expr, Status::Failure) else {
        return;
    };
    let again = Condition::parse(condition.expr(), Status::Failure).expect("its own text parses");
    assert_eq!(again, condition);
    for seen in [
        Observation::default(),
        Observation {
            status: Some(200),
            response_time_ms: Some(12),
            body: Some(body),
            connected: true,
            certificate_expires_in_ms: Some(-5),
            dns_rcode: Some("NOERROR"),
            ip: Some("127.0.0.1"),
            usage: Some(lookout_proto::condition::UsageSeen {
                cpu_percent: Some(f64::MAX),
                memory_bytes: Some(u64::MAX),
                memory_percent: Some(f64::NAN),
                tasks: Some(u64::MAX),
                disk_percent: Some(f64::INFINITY),
                disk_full_in_ms: Some(lookout_proto::condition::NEVER),
                load: Some(-0.0),
            }),
        },
    ] {
        let _ = condition.evaluate(&seen);
    }
});
