//! Meters a wasm file (and times `meter` and `meter_inline` on it).
//!
//! `cargo run --release -p cu-metering --example meter_file -- <in.wasm> [i32|i64] [out.wasm]`

use std::process::ExitCode;
use std::time::Instant;

use cu_metering::{MeterOptions, MeterType, meter, meter_inline};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(input) = args.first() else {
        eprintln!("usage: meter_file <in.wasm> [i32|i64] [out.wasm]");
        return ExitCode::FAILURE;
    };
    let ty = match args.get(1).map(String::as_str) {
        None | Some("i32") => MeterType::I32,
        Some("i64") => MeterType::I64,
        Some(other) => {
            eprintln!("unknown meter type {other}");
            return ExitCode::FAILURE;
        }
    };
    let wasm = match std::fs::read(input) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("{input}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut best = f64::INFINITY;
    let mut out = Vec::new();
    for _ in 0..10 {
        let t0 = Instant::now();
        out = match meter(&wasm, ty) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("{input}: {e}");
                return ExitCode::FAILURE;
            }
        };
        best = best.min(t0.elapsed().as_secs_f64());
    }
    let mut best_inline = f64::INFINITY;
    let mut inline_len = 0;
    for _ in 0..10 {
        let t0 = Instant::now();
        match meter_inline(&wasm, &MeterOptions::new(ty)) {
            Ok(o) => inline_len = o.len(),
            Err(e) => {
                eprintln!("{input}: meter_inline: {e}");
                break;
            }
        }
        best_inline = best_inline.min(t0.elapsed().as_secs_f64());
    }
    println!(
        "{input}: {} -> {} bytes, best of 10: {:.2} ms (meter_inline: {} bytes, {:.2} ms)",
        wasm.len(),
        out.len(),
        best * 1e3,
        inline_len,
        best_inline * 1e3
    );
    if let Some(path) = args.get(2)
        && let Err(e) = std::fs::write(path, &out)
    {
        eprintln!("{path}: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
