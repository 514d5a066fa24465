//! libFuzzer entry of the `ans104` target ([`cu_fuzz::targets::ans104`]); see docs/ARCHITECTURE.md, "Fuzzing".
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cu_fuzz::targets::ans104(data));
