//! libFuzzer entry of the `http_query` target ([`cu_fuzz::targets::http_query`]); see docs/ARCHITECTURE.md, "Fuzzing".
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cu_fuzz::targets::http_query(data));
