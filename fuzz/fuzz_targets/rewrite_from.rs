//! Fuzz target: see `hikyaku_fuzz::checks::check_rewrite` for the invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hikyaku_fuzz::checks::check_rewrite(data);
});
