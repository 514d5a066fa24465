//! Runs the quantised digits classifier (from `train/train_digits.py`) through cu-gpu's kernels,
//! on the CPU twin and, when an adapter exists, on the GPU; checks that both give the same bytes
//! and the same predictions as the training script's numpy port, and prints the accuracy.
//!
//! ```text
//! python3 crates/cu-gpu/train/train_digits.py --out target-gpu/digits
//! cargo run --release -p cu-gpu --example digits -- target-gpu/digits
//! ```

#![allow(missing_docs)]

use std::error::Error;
use std::path::{Path, PathBuf};

use base64::Engine;
use cu_gpu::{DeviceConfig, ElemType, MatmulDims, Placement, Requant, TensorDevice, u32s_from_le};
use serde_json::Value;

struct Layer {
    inputs: u32,
    outputs: u32,
    weights: Vec<u8>,
    bias: Vec<u8>,
    requant: Option<Requant>,
    relu: bool,
    softmax_beta: Option<u32>,
}

fn b64(v: &Value) -> Result<Vec<u8>, Box<dyn Error>> {
    let s = v.as_str().ok_or("expected a base64 string")?;
    Ok(base64::engine::general_purpose::STANDARD.decode(s)?)
}

fn num<T: TryFrom<i64>>(v: &Value) -> Result<T, Box<dyn Error>> {
    let n = v.as_i64().ok_or("expected an integer")?;
    T::try_from(n).map_err(|_| "integer out of range".into())
}

fn load_model(v: &Value) -> Result<Vec<Layer>, Box<dyn Error>> {
    let layers = v["layers"].as_array().ok_or("model has no layers")?;
    layers
        .iter()
        .map(|l| {
            let requant = match l.get("requant") {
                Some(q) => Some(Requant::from_scale_parts(
                    num(&q["multiplier"])?,
                    num(&q["shift"])?,
                    num(&q["zero_point"])?,
                )?),
                None => None,
            };
            Ok(Layer {
                inputs: num(&l["in"])?,
                outputs: num(&l["out"])?,
                weights: b64(&l["weights"])?,
                bias: b64(&l["bias"])?,
                requant,
                relu: l.get("relu").and_then(Value::as_bool).unwrap_or(false),
                softmax_beta: l.get("softmax_beta").map(num).transpose()?,
            })
        })
        .collect()
}

/// Every intermediate tensor of one run, and the predicted classes.
type Inference = (Vec<Vec<u8>>, Vec<u32>);

/// The whole network for `rows` inputs.
fn infer(dev: &TensorDevice, layers: &[Layer], x: &[u8], rows: u32) -> Result<Inference, Box<dyn Error>> {
    let mut trace = Vec::new();
    let mut act = x.to_vec();
    for layer in layers {
        let d = MatmulDims {
            m: rows,
            k: layer.inputs,
            n: layer.outputs,
        };
        let acc = dev.matmul_i8(&act, &layer.weights, d)?;
        let acc = dev.add(ElemType::I32, &acc, &layer.bias)?;
        trace.push(acc.clone());
        if let Some(beta) = layer.softmax_beta {
            let out = dev.softmax_argmax(&acc, rows, layer.outputs, beta)?;
            trace.push(out.probs.clone());
            return Ok((trace, u32s_from_le(&out.argmax)));
        }
        let q = layer.requant.ok_or("hidden layer without requant parameters")?;
        act = dev.requantize(&acc, q)?;
        if layer.relu {
            act = dev.relu(ElemType::I8, &act)?;
        }
        trace.push(act.clone());
    }
    Err("the last layer has no softmax".into())
}

/// What [`evaluate`] found.
pub struct Report {
    pub rows: u32,
    pub float_accuracy: f64,
    pub numpy_accuracy: f64,
    pub cpu_accuracy: f64,
    /// GPU accuracy and adapter name, or why there is no GPU.
    pub gpu: Result<(f64, String), String>,
    pub tensors_compared: usize,
}

/// Runs the model in `dir` (model.json, test.json) on the CPU twin and, if one opens, the GPU.
/// Fails if the CPU predictions differ from the numpy port's or the GPU bytes from the CPU's.
pub fn evaluate(dir: &Path) -> Result<Report, Box<dyn Error>> {
    let model: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("model.json"))?)?;
    let test: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("test.json"))?)?;
    let layers = load_model(&model)?;
    let x = b64(&test["inputs"])?;
    let rows: u32 = num(&test["count"])?;
    let labels: Vec<u32> = test["labels"]
        .as_array()
        .ok_or("no labels")?
        .iter()
        .map(num)
        .collect::<Result<_, _>>()?;
    let expected: Vec<u32> = test["expected_predictions"]
        .as_array()
        .ok_or("no predictions")?
        .iter()
        .map(num)
        .collect::<Result<_, _>>()?;

    let cpu = TensorDevice::cpu_only();
    let (cpu_trace, cpu_pred) = infer(&cpu, &layers, &x, rows)?;
    if cpu_pred != expected {
        return Err("CPU kernels disagree with the numpy port's predictions".into());
    }
    let accuracy =
        |p: &[u32]| p.iter().zip(&labels).filter(|(a, b)| a == b).count() as f64 / labels.len() as f64;
    let gpu = match TensorDevice::open(DeviceConfig {
        placement: Placement::Gpu,
        ..DeviceConfig::default()
    }) {
        Ok(gpu) => {
            let (gpu_trace, gpu_pred) = infer(&gpu, &layers, &x, rows)?;
            if gpu_trace != cpu_trace || gpu_pred != cpu_pred {
                return Err("GPU and CPU results differ".into());
            }
            // One image per call, as an inference process classifying one message at a time.
            for i in 0..rows.min(20) {
                let one = &x[(i * 64) as usize..((i + 1) * 64) as usize];
                let (_, p) = infer(&gpu, &layers, one, 1)?;
                if p[0] != cpu_pred[i as usize] {
                    return Err(format!("single-image GPU prediction {i} differs").into());
                }
            }
            Ok((
                accuracy(&gpu_pred),
                gpu.adapter().map(|a| a.name.clone()).unwrap_or_default(),
            ))
        }
        Err(e) => Err(e.to_string()),
    };
    Ok(Report {
        rows,
        float_accuracy: test["float_accuracy"].as_f64().unwrap_or(f64::NAN),
        numpy_accuracy: test["quantized_accuracy"].as_f64().unwrap_or(f64::NAN),
        cpu_accuracy: accuracy(&cpu_pred),
        gpu,
        tensors_compared: cpu_trace.len(),
    })
}

#[allow(dead_code)]
fn main() -> Result<(), Box<dyn Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target-gpu/digits".into()),
    );
    let r = evaluate(&dir)?;
    println!("test images:                {}", r.rows);
    println!("float accuracy (sklearn):   {:.4}", r.float_accuracy);
    println!("int8 accuracy (numpy port): {:.4}", r.numpy_accuracy);
    println!("int8 accuracy (cu-gpu CPU): {:.4}", r.cpu_accuracy);
    match r.gpu {
        Ok((acc, name)) => {
            println!("int8 accuracy (cu-gpu GPU): {acc:.4}  on {name}");
            println!(
                "GPU == CPU: all {} intermediate tensors bit-identical",
                r.tensors_compared
            );
        }
        Err(e) => println!("no GPU adapter ({e}); CPU only"),
    }
    Ok(())
}
