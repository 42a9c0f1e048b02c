//! Arbitrary bytes as the start of a request head, through the patched
//! tiny_http's head reader and body-framing check (the servers' own code).

#![no_main]

use fabric_telemetry_fuzz::head_checks;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(why) = head_checks::check_head(data) {
        panic!("head: {why}");
    }
});
