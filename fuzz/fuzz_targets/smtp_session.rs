//! Fuzz target: see `hikyaku_fuzz::checks::check_smtp_session` for the invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = hikyaku_fuzz::checks::check_smtp_session(data);
});
