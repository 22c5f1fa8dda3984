//! What the hub sends an agent: decoding never panics, and what decodes
//! encodes and decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lookout_proto::agent::HubMessage;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = serde_json::from_slice::<HubMessage>(data) {
        let text = serde_json::to_string(&message).expect("encodes");
        let again: HubMessage = serde_json::from_str(&text).expect("decodes again");
        assert_eq!(again, message);
    }
});
