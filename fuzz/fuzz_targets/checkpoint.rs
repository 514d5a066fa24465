//! libFuzzer entry of the `checkpoint` target ([`cu_fuzz::targets::checkpoint`]); see docs/ARCHITECTURE.md, "Fuzzing".
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cu_fuzz::targets::checkpoint(data));
