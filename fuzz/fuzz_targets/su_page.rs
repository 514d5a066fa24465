//! libFuzzer entry of the `su_page` target ([`cu_fuzz::targets::su_page`]); see docs/ARCHITECTURE.md, "Fuzzing".
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cu_fuzz::targets::su_page(data));
