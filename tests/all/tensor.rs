//! The `ao_tensor` host import (`crates/cu-wasm/src/host/tensor.rs`, `docs/tensor-api.md`) through the
//! inference process `tests/modules/tensor/infer.c` (built by `tests/modules/build.sh` into
//! `tests/modules/build/tensor-infer.wasm`, format wasm32-unknown-emscripten2): bad pointers and
//! parameters are the message's Error and the process goes on; gas is charged from the shapes only; the
//! digits model trained by `crates/cu-gpu/train/train_digits.py` classifies the held-out set through
//! ao-cu with the accuracy the cu-gpu digits example reports, with the same bytes on the CPU twin and
//! on a GPU (lavapipe in CI).
//!
//! Needs the built module, `python3` with numpy and scikit-learn, and for the GPU test a Vulkan adapter
//! (`mesa-vulkan-drivers`); outside CI a test without them prints why it skips.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use cu_tests::*;
use cu_types::{EvalOutput, Limits, ModuleFormat};
use cu_wasm::cu_gpu::{DeviceConfig, Placement, TensorDevice};
use cu_wasm::{CompiledModule, Process, ProcessConfig};
use serde_json::{Value, json};

const ENV: &str = r#"{"Process":{"Id":"tensor-process","Owner":"owner","Tags":[]}}"#;

fn module() -> Option<Arc<CompiledModule>> {
    static MODULE: OnceLock<Option<Arc<CompiledModule>>> = OnceLock::new();
    MODULE
        .get_or_init(|| built_module("tensor-infer.wasm").map(|w| compile(&w, ModuleFormat::Emscripten2)))
        .clone()
}

fn process(module: &Arc<CompiledModule>, device: TensorDevice, limits: Limits) -> Process {
    let config = ProcessConfig {
        limits,
        this_program: THIS_PROGRAM.into(),
        tensor: device,
        ..ProcessConfig::default()
    };
    Process::boot(Arc::clone(module), config).unwrap()
}

fn send(p: &mut Process, action: &str, data: &str) -> EvalOutput {
    let msg = json!({
        "Id": "message",
        "Owner": "owner",
        "Tags": [{"name": "Action", "value": action}],
        "Data": data,
    });
    p.handle(&msg.to_string(), ENV).unwrap()
}

fn ok_output(out: &EvalOutput) -> String {
    assert_eq!(out.error, None, "unexpected Error");
    out.output.as_str().unwrap().to_string()
}

fn error_text(out: &EvalOutput) -> String {
    out.error
        .as_ref()
        .and_then(Value::as_str)
        .expect("an Error")
        .to_string()
}

/// The documented gas of one call: 1000 + input bytes + output bytes + work.
fn gas(input: u64, output: u64, work: u64) -> u64 {
    1000 + input + output + work
}

/// The shared GPU device (forced GPU placement), or `None` with a printed reason; fails under CI.
fn gpu() -> Option<TensorDevice> {
    static DEVICE: OnceLock<Result<TensorDevice, String>> = OnceLock::new();
    let device = DEVICE.get_or_init(|| {
        TensorDevice::open(DeviceConfig {
            placement: Placement::Gpu,
            ..DeviceConfig::default()
        })
        .map_err(|e| e.to_string())
    });
    match device {
        Ok(d) => Some(d.clone()),
        Err(e) => {
            missing(&format!(
                "a GPU adapter for ao_tensor (apt-get install mesa-vulkan-drivers): {e}"
            ));
            None
        }
    }
}

/// `model.json` and `test.json` written by the training script (trained once per test run).
fn digits() -> Option<(String, Value)> {
    static DIR: OnceLock<Option<(tempfile::TempDir, PathBuf)>> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let script = repo().join("crates/cu-gpu/train/train_digits.py");
        let out = std::process::Command::new("python3")
            .arg(&script)
            .arg("--out")
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => {
                eprintln!("{}", String::from_utf8_lossy(&o.stdout));
                let path = dir.path().to_path_buf();
                Some((dir, path))
            }
            Ok(o) => {
                missing(&format!(
                    "python3 with numpy and scikit-learn for {}: {}",
                    script.display(),
                    String::from_utf8_lossy(&o.stderr)
                ));
                None
            }
            Err(e) => {
                missing(&format!("python3: {e}"));
                None
            }
        }
    });
    let (_, path) = dir.as_ref()?;
    let model = std::fs::read_to_string(path.join("model.json")).unwrap();
    let test: Value =
        serde_json::from_str(&std::fs::read_to_string(path.join("test.json")).unwrap()).unwrap();
    Some((model, test))
}

/// The address of the process's 64 KiB scratch buffer.
fn scratch(p: &mut Process) -> u64 {
    let out = ok_output(&send(p, "Call", "scratch"));
    out.strip_prefix("scratch ").unwrap().parse().unwrap()
}

#[test]
fn bad_pointers_and_parameters_are_the_message_error_and_the_process_goes_on() {
    let Some(module) = module() else { return };
    let mut p = process(&module, TensorDevice::cpu_only(), Limits::default());
    let s = scratch(&mut p);
    let memory = 16u64 << 20; // INITIAL_MEMORY, the module never grows here
    assert_eq!(
        ok_output(&send(&mut p, "Call", &format!("relu_i8 {s} {} 64", s + 64))),
        "called relu_i8"
    );

    let cases = [
        (
            format!("matmul_i8 4294967000 {s} {} 4 4 4", s + 1024),
            format!("ao_tensor.matmul_i8: out of bounds: a at 4294967000+16 > memory {memory}"),
        ),
        (
            format!("matmul_i8 {s} {s} {} 4 4 4", memory - 8),
            format!(
                "ao_tensor.matmul_i8: out of bounds: c at {}+64 > memory {memory}",
                memory - 8
            ),
        ),
        (
            // 65536 × 65536 int8 = 4 GiB: over the 1 GiB tensor limit (and the memory)
            format!("matmul_i8 {s} {s} {s} 65536 65536 1"),
            "ao_tensor.matmul_i8: a: 4294967296 bytes exceeds the limit of 1073741824 bytes".into(),
        ),
        (
            format!("requantize {s} {s} 16 1073741824 40 0"),
            "ao_tensor.requantize: invalid argument shift: 40 is outside [-31, 31]".into(),
        ),
        (
            format!("add_i8 {s} {s} {s} 64 3"),
            "ao_tensor.add_i8: invalid argument b_len: 3 must be at least 1 and divide len 64".into(),
        ),
        (
            format!("softmax_argmax {s} {s} {s} 1 0 100"),
            "ao_tensor.softmax_argmax: invalid argument cols: 0 is outside [1, 65536]".into(),
        ),
        (
            format!("relu_i32 {} {s} 4", memory - 15),
            format!(
                "ao_tensor.relu_i32: out of bounds: x at {}+16 > memory {memory}",
                memory - 15
            ),
        ),
    ];
    for (call, want) in &cases {
        let out = send(&mut p, "Call", call);
        assert_eq!(error_text(&out), *want, "{call}");
        // The process is unharmed: the next call works.
        assert_eq!(
            ok_output(&send(
                &mut p,
                "Call",
                &format!("add_i32 {s} {s} {} 16 4", s + 4096)
            )),
            "called add_i32"
        );
    }
}

#[test]
fn gas_is_charged_from_the_shapes() {
    let Some(module) = module() else { return };
    let mut p = process(&module, TensorDevice::cpu_only(), Limits::default());
    let s = scratch(&mut p);
    // The module is not metered (format emscripten2): GasUsed is exactly the ao_tensor charges.
    let calls = [
        (format!("matmul_i8 {s} {s} {s} 3 5 7"), gas(15 + 35, 4 * 21, 105)),
        (
            format!("requantize {s} {s} 100 1073741824 3 0"),
            gas(400, 100, 800),
        ),
        (format!("add_i8 {s} {s} {s} 60 6"), gas(66, 60, 60)),
        (format!("add_i32 {s} {s} {s} 60 60"), gas(480, 240, 60)),
        (format!("relu_i8 {s} {s} 1000"), gas(1000, 1000, 1000)),
        (format!("relu_i32 {s} {s} 1000"), gas(4000, 4000, 1000)),
        (
            format!("softmax_argmax {s} {s} {} 3 10 5000", s + 8192),
            gas(120, 120 + 12, 480),
        ),
        (format!("matmul_i8 {s} {s} {s} 0 9 9"), gas(81, 0, 0)),
    ];
    for (call, want) in &calls {
        let first = send(&mut p, "Call", call);
        assert_eq!(first.error, None, "{call}");
        assert_eq!(first.gas_used, *want, "{call}");
        assert_eq!(send(&mut p, "Call", call).gas_used, *want, "{call} again");
    }

    // Over the limit: `out of gas!` before any work, and the process goes on.
    let limits = Limits {
        compute_limit: Some(100_000),
        ..Limits::default()
    };
    let mut p = process(&module, TensorDevice::cpu_only(), limits);
    let s = scratch(&mut p);
    let out = send(&mut p, "Call", &format!("matmul_i8 {s} {s} {s} 64 64 64"));
    assert_eq!(error_text(&out), "out of gas!");
    let out = send(&mut p, "Call", &format!("matmul_i8 {s} {s} {s} 8 8 8"));
    assert_eq!(out.error, None);
    assert_eq!(out.gas_used, gas(128, 256, 512));
}

/// Loads the model, classifies every held-out image in one message; returns (Output, GasUsed).
fn classify_all(device: TensorDevice, model: &str, test: &Value) -> (String, u64) {
    let module = module().unwrap();
    let mut p = process(&module, device, Limits::default());
    assert_eq!(
        ok_output(&send(&mut p, "Load-Model", model)),
        "loaded 2 layers, 64 inputs"
    );
    assert!(error_text(&send(&mut p, "Classify", "AAAA")).contains("whole samples"));
    let out = send(&mut p, "Classify", test["inputs"].as_str().unwrap());
    (ok_output(&out), out.gas_used)
}

fn predictions(output: &str) -> Vec<u64> {
    let (classes, _) = output.split_once(";probs=").unwrap();
    classes.split(',').map(|c| c.parse().unwrap()).collect()
}

#[test]
fn digits_accuracy_through_ao_cu_equals_the_cu_gpu_example() {
    if module().is_none() {
        return;
    }
    let Some((model, test)) = digits() else { return };
    let (output, gas_used) = classify_all(TensorDevice::cpu_only(), &model, &test);
    let predicted = predictions(&output);
    let labels: Vec<u64> = test["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = test["expected_predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(predicted.len(), 540);
    // The same predictions as the numpy port of the kernels (which the cu-gpu example matches).
    assert_eq!(predicted, expected);
    let correct = predicted.iter().zip(&labels).filter(|(p, l)| p == l).count();
    let accuracy = correct as f64 / labels.len() as f64;
    let quantized = test["quantized_accuracy"].as_f64().unwrap();
    eprintln!(
        "digits through ao-cu: accuracy {accuracy:.4} ({correct}/{}), quantised (numpy port) {quantized:.4}, \
         float {:.4}, GasUsed {gas_used}",
        labels.len(),
        test["float_accuracy"].as_f64().unwrap()
    );
    assert_eq!(accuracy, quantized);

    // Gas of the Classify message: one charge per import call, from the shapes only.
    let r = 540u64;
    let (h, c) = (32u64, 10u64);
    let want = gas(r * 64 + 64 * h, 4 * r * h, r * h * 64) // matmul_i8
        + gas(4 * (r * h + h), 4 * r * h, r * h) // add_i32 (bias)
        + gas(4 * r * h, r * h, 8 * r * h) // requantize
        + gas(r * h, r * h, r * h) // relu_i8
        + gas(r * h + h * c, 4 * r * c, r * c * h) // matmul_i8
        + gas(4 * (r * c + c), 4 * r * c, r * c) // add_i32 (bias)
        + gas(4 * r * c, 4 * r * c + 4 * r, 16 * r * c); // softmax_argmax
    assert_eq!(gas_used, want);
}

#[test]
fn inference_gives_the_same_bytes_on_the_gpu_and_the_cpu() {
    if module().is_none() {
        return;
    }
    let Some((model, test)) = digits() else { return };
    let Some(gpu) = gpu() else { return };
    eprintln!("ao_tensor GPU test runs on {:?}", gpu.adapter());
    let before = gpu.batch_stats();
    let on_cpu = classify_all(TensorDevice::cpu_only(), &model, &test);
    let on_gpu = classify_all(gpu.clone(), &model, &test);
    // Output carries every prediction and a hash of every probability.
    assert_eq!(on_gpu, on_cpu);
    let after = gpu.batch_stats();
    // 7 imports per Classify, all placed on the GPU (Placement::Gpu), none failed.
    assert!(
        after.jobs >= before.jobs + 7,
        "the GPU ran too few jobs: {before:?} -> {after:?}"
    );
    assert_eq!(after.failed_submissions, before.failed_submissions);
}
