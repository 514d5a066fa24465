//! libFuzzer entry of the `snapshot` target ([`cu_fuzz::targets::snapshot`]); see docs/ARCHITECTURE.md, "Fuzzing".
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cu_fuzz::targets::snapshot(data));
