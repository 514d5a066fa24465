//! End to end: train and quantise the digits MLP with `train/train_digits.py` (scikit-learn's
//! bundled 8×8 digits), run it through the kernels on the CPU twin and the GPU, and check that the
//! three implementations (numpy port, CPU, GPU) agree on every prediction and every byte.
//!
//! Needs `python3` with numpy and scikit-learn; skips with a printed reason without them, fails
//! under `CI=true`.

#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

#[path = "../examples/digits.rs"]
mod digits;

use std::process::Command;

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

#[test]
fn quantised_digits_model_agrees_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/train/train_digits.py");
    let out = Command::new("python3")
        .arg(script)
        .arg("--out")
        .arg(dir.path())
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            let why = String::from_utf8_lossy(&o.stderr).to_string();
            if ci() || !why.contains("ModuleNotFoundError") {
                panic!("train_digits.py failed: {why}");
            }
            eprintln!("skipping: python3 lacks numpy/scikit-learn: {why}");
            return;
        }
        Err(e) if !ci() => {
            eprintln!("skipping: no python3: {e}");
            return;
        }
        Err(e) => panic!("CI=true needs python3 with numpy and scikit-learn: {e}"),
    };
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    let report = digits::evaluate(dir.path()).unwrap();
    assert_eq!(report.rows, 540);
    assert!(
        report.float_accuracy > 0.9,
        "float model too weak: {}",
        report.float_accuracy
    );
    assert_eq!(report.cpu_accuracy, report.numpy_accuracy);
    assert!(
        report.cpu_accuracy > 0.9,
        "quantised model too weak: {}",
        report.cpu_accuracy
    );
    match report.gpu {
        Ok((acc, name)) => {
            assert_eq!(acc, report.cpu_accuracy);
            eprintln!(
                "GPU ({name}) == CPU on {} tensors; int8 accuracy {acc:.4}",
                report.tensors_compared
            );
        }
        Err(e) if ci() => panic!("CI=true requires a GPU adapter (apt-get install mesa-vulkan-drivers): {e}"),
        Err(e) => eprintln!("GPU part skipped: {e}"),
    }
}
