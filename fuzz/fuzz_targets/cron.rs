//! `cron`: see `fuzz/common/checks.rs` and FUZZING.md.
#![no_main]

#[path = "../common/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::cron(data));
