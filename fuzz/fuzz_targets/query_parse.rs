//! Arbitrary query strings through `query::decode`, `pairs` and `param`,
//! compared with a reference decoder: valid UTF-8 inputs as they are, others
//! after lossy conversion (a query string is always a `&str` by then).

#![no_main]

use fabric_telemetry_fuzz::checks;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let q = String::from_utf8_lossy(data);
    if let Err(why) = checks::check_query(&q) {
        panic!("query: {why}");
    }
});
