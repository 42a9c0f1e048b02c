//! Arbitrary bytes through the CSV reader and `Snapshot::parse`.
//!
//! The reader must not panic, must make progress and must agree with the
//! writer; `Snapshot::parse` must not panic, must honour its row limit, and a
//! snapshot it accepts must be consistent: indexes, every number a finite
//! JSON number that reads back as the value, `list_body` valid JSON that says
//! exactly what the CSV said.

#![no_main]

use fabric_telemetry_fuzz::checks;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(why) = checks::check_csv_reader(data) {
        panic!(
            "csv::Reader: {why}\ninput: {:?}",
            String::from_utf8_lossy(data)
        );
    }
    if let Err(why) = checks::check_snapshot_parse(data) {
        panic!(
            "Snapshot::parse: {why}\ninput: {:?}",
            String::from_utf8_lossy(data)
        );
    }
});
