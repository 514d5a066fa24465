//! libFuzzer entry of the `graphql` target ([`cu_fuzz::targets::graphql`]); see docs/ARCHITECTURE.md, "Fuzzing".
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cu_fuzz::targets::graphql(data));
