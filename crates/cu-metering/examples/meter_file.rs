//! Meters a wasm file with `meter` and `meter_inline` and reports the best of 10 timings.
//!
//! `cargo run --release -p cu-metering --example meter_file -- <in.wasm> [i32|i64] [out.wasm]`

use std::process::ExitCode;
use std::time::Instant;

use cu_metering::{MeterError, MeterOptions, MeterType, meter_inline, meter_with};

type MeterFn = fn(&[u8], &MeterOptions) -> Result<Vec<u8>, MeterError>;

/// Best-of-10 time in ms and the output, or the error.
fn time(f: MeterFn, wasm: &[u8], opts: &MeterOptions) -> Result<(f64, Vec<u8>), MeterError> {
    let mut best = f64::INFINITY;
    let mut out = Vec::new();
    for _ in 0..10 {
        let t0 = Instant::now();
        out = f(wasm, opts)?;
        best = best.min(t0.elapsed().as_secs_f64() * 1e3);
    }
    Ok((best, out))
}

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
    let opts = MeterOptions::new(ty);
    println!("{input}: {} bytes", wasm.len());
    let mut status = ExitCode::SUCCESS;
    for (name, f) in [("meter", meter_with as MeterFn), ("meter_inline", meter_inline)] {
        match time(f, &wasm, &opts) {
            Ok((ms, out)) => {
                println!("  {name}: {} bytes, best of 10: {ms:.2} ms", out.len());
                if name == "meter"
                    && let Some(path) = args.get(2)
                    && let Err(e) = std::fs::write(path, &out)
                {
                    eprintln!("{path}: {e}");
                    status = ExitCode::FAILURE;
                }
            }
            Err(e) => println!("  {name}: {e}"),
        }
    }
    status
}
