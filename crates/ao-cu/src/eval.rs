//! `ao-cu eval`: one process, a log of messages, one result line per message.
//!
//! Input: JSON Lines, each `{"msg": {...}, "env": {...}}` (blank lines are skipped), from `--messages FILE`
//! or standard input. The `msg` and `env` objects are passed to `handle` as `JSON.stringify` would write
//! them (key order kept, numbers as JavaScript prints them). Output: one line per message,
//! `{"Output", "Messages", "Spawns", "Assignments", "GasUsed"}` plus `"Error"` when the message failed.
//! A failed message does not stop the run (exit 0); an unreadable module, an unknown format, a malformed
//! line (reported with its line number) or an invalid snapshot exit non-zero.

use std::fs;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use cu_types::result::to_js_json;
use cu_types::{Limits, ModuleFormat, parse_compute_limit, parse_memory_limit};
use cu_wasm::{AotCache, Loader, Process, ProcessConfig, Snapshot};
use serde_json::Value;

/// Arguments of `ao-cu eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The WebAssembly module (`.wasm`).
    #[arg(long)]
    module: PathBuf,
    /// The module format (the `Module-Format` tag value), e.g. `wasm64-unknown-emscripten-draft_2024_02_15`.
    #[arg(long)]
    format: String,
    /// What the `Memory-Limit` tag means: bytes or a size such as `512-mb`, `1-gb`.
    #[arg(long)]
    memory_limit: Option<String>,
    /// What the `Compute-Limit` tag means: gas per message.
    #[arg(long)]
    compute_limit: Option<String>,
    /// JSON Lines of `{"msg": ..., "env": ...}`; standard input when absent or `-`.
    #[arg(long)]
    messages: Option<PathBuf>,
    /// Resume from this snapshot instead of booting the module.
    #[arg(long)]
    state_in: Option<PathBuf>,
    /// Write the process snapshot here after the last message.
    #[arg(long)]
    state_out: Option<PathBuf>,
    #[command(flatten)]
    cache: CacheArgs,
    /// `argv[0]` given to `main` (default `./this.program`); tests use it to reproduce another host's memory.
    #[arg(long)]
    this_program: Option<String>,
    /// Add `"MemoryHash"` (BLAKE3 of linear memory after the message) to each result line.
    #[arg(long)]
    memory_hash: bool,
    /// Print the time spent evaluating (inside `handle`, without I/O) to standard error at the end.
    #[arg(long)]
    timing: bool,
    /// With `--timing`, also print the evaluation time of messages K.. (0-based) alone, so a benchmark
    /// can leave its set-up messages out.
    #[arg(long, value_name = "K")]
    time_from: Option<usize>,
}

/// Where compiled modules are cached (`ao-cu eval` and `ao-cu run`).
#[derive(Args, Debug)]
pub struct CacheArgs {
    /// AOT cache directory (default: `$XDG_CACHE_HOME/ao-cu/modules` or `~/.cache/ao-cu/modules`).
    #[arg(long, env = "AO_CU_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile in memory only, without the AOT cache.
    #[arg(long)]
    no_cache: bool,
}

impl CacheArgs {
    /// The AOT cache these flags select (none with `--no-cache`).
    pub fn aot_cache(&self) -> Option<AotCache> {
        self.aot_dir().map(AotCache::new)
    }

    /// The directory of the AOT cache these flags select (none with `--no-cache`).
    pub fn aot_dir(&self) -> Option<PathBuf> {
        if self.no_cache {
            return None;
        }
        self.cache_dir.clone().or_else(default_cache_dir)
    }
}

/// The default AOT cache directory.
fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("ao-cu").join("modules"))
}

/// One parsed input line: the texts passed to `handle`.
pub struct Message {
    /// `JSON.stringify(msg)`.
    pub msg: String,
    /// `JSON.stringify(env)`.
    pub env: String,
}

/// Parses one input line; `line_no` is 1-based and appears in errors.
pub fn parse_line(line: &str, line_no: usize) -> Result<Message> {
    let mut value: Value =
        serde_json::from_str(line).map_err(|e| anyhow!("line {line_no}: not valid JSON: {e}"))?;
    let Value::Object(map) = &mut value else {
        bail!("line {line_no}: expected an object {{\"msg\": ..., \"env\": ...}}");
    };
    let mut take = |key: &str| -> Result<String> {
        let v = map
            .remove(key)
            .ok_or_else(|| anyhow!("line {line_no}: missing \"{key}\""))?;
        if !v.is_object() {
            bail!("line {line_no}: \"{key}\" must be an object");
        }
        Ok(to_js_json(&v))
    };
    Ok(Message {
        msg: take("msg")?,
        env: take("env")?,
    })
}

/// Runs `ao-cu eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    let format: ModuleFormat = args.format.parse()?;
    let limits = Limits {
        memory_limit: args.memory_limit.as_deref().map(parse_memory_limit).transpose()?,
        compute_limit: args
            .compute_limit
            .as_deref()
            .map(parse_compute_limit)
            .transpose()?,
    };
    let wasm =
        fs::read(&args.module).with_context(|| format!("cannot read module {}", args.module.display()))?;
    let cache = args.cache.aot_cache();
    let snapshot = match &args.state_in {
        Some(path) => {
            let bytes = fs::read(path).with_context(|| format!("cannot read snapshot {}", path.display()))?;
            Some(Snapshot::decode(&bytes)?)
        }
        None => None,
    };
    let input: Box<dyn BufRead + Send> = match &args.messages {
        Some(p) if p.as_os_str() != "-" => Box::new(BufReader::new(
            fs::File::open(p).with_context(|| format!("cannot open messages {}", p.display()))?,
        )),
        _ => Box::new(BufReader::new(io::stdin())),
    };
    let config = ProcessConfig {
        limits,
        this_program: args
            .this_program
            .clone()
            .unwrap_or_else(|| cu_wasm::THIS_PROGRAM.to_string()),
        ..ProcessConfig::default()
    };
    let state_out = args.state_out.clone();
    let memory_hash = args.memory_hash;
    let timing = args.timing;
    let time_from = args.time_from;
    // Evaluate on a thread with a known, large stack (the wasm stack limit is fixed by the engine).
    let worker = std::thread::Builder::new()
        .name("ao-cu-eval".into())
        .stack_size(cu_wasm::EVAL_THREAD_STACK)
        .spawn(move || -> Result<()> {
            let loader = Loader::new(cache)?;
            let module = loader.load(&wasm, format)?;
            let mut process = match snapshot {
                Some(s) => Process::restore(Arc::clone(&module), s, config)?,
                None => Process::boot(Arc::clone(&module), config)?,
            };
            let from = time_from.unwrap_or(0);
            let (count, spent, tail) = evaluate(&mut process, input, memory_hash, from)?;
            if timing {
                let ms = spent.as_secs_f64() * 1000.0;
                let per = if count == 0 { 0.0 } else { ms / count as f64 };
                eprintln!("ao-cu eval: {count} messages, evaluation {ms:.3} ms ({per:.3} ms/message)");
                if time_from.is_some() {
                    let tail_ms = tail.as_secs_f64() * 1000.0;
                    eprintln!("ao-cu eval: evaluation from message {from}: {tail_ms:.3} ms");
                }
            }
            if let Some(path) = state_out {
                let bytes = process.snapshot()?.encode()?;
                write_atomically(&path, &bytes)?;
            }
            Ok(())
        })?;
    worker
        .join()
        .map_err(|_| anyhow!("the evaluation thread panicked"))?
}

fn evaluate(
    process: &mut Process,
    input: Box<dyn BufRead + Send>,
    memory_hash: bool,
    time_from: usize,
) -> Result<(usize, std::time::Duration, std::time::Duration)> {
    let mut spent = std::time::Duration::ZERO;
    let mut tail = std::time::Duration::ZERO;
    let mut count = 0;
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut reader = input;
    let mut line = String::new();
    let mut line_no = 0;
    loop {
        line.clear();
        let n = read_line(&mut reader, &mut line)
            .with_context(|| format!("line {}: cannot read", line_no + 1))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if line.trim().is_empty() {
            continue;
        }
        let message = parse_line(line.trim_end(), line_no)?;
        let started = std::time::Instant::now();
        let result = process
            .handle(&message.msg, &message.env)
            .with_context(|| format!("line {line_no}"))?;
        let took = started.elapsed();
        spent += took;
        if count >= time_from {
            tail += took;
        }
        count += 1;
        let mut value = serde_json::to_value(&result)?;
        if memory_hash && let Value::Object(map) = &mut value {
            map.insert("MemoryHash".into(), Value::String(process.memory_hash()));
        }
        serde_json::to_writer(&mut out, &value)?;
        out.write_all(b"\n")?;
        out.flush()?;
    }
    Ok((count, spent, tail))
}

fn read_line(reader: &mut Box<dyn BufRead + Send>, line: &mut String) -> io::Result<usize> {
    let mut bytes = Vec::new();
    let n = reader.read_until(b'\n', &mut bytes)?;
    *line = String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(n)
}

fn write_atomically(path: &PathBuf, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_reserialized_like_json_stringify() {
        let m = parse_line(r#"{"msg": {"Id": "x", "Timestamp": 1700000000123, "N": 2.0, "Tags": []}, "env": {"Process": {}}}"#, 1)
            .unwrap();
        assert_eq!(m.msg, r#"{"Id":"x","Timestamp":1700000000123,"N":2,"Tags":[]}"#);
        assert_eq!(m.env, r#"{"Process":{}}"#);
    }

    #[test]
    fn malformed_lines_name_their_line() {
        for (line, text) in [
            ("{", "line 7: not valid JSON"),
            ("[]", "line 7: expected an object"),
            (r#"{"msg": {}}"#, "line 7: missing \"env\""),
            (r#"{"msg": 1, "env": {}}"#, "line 7: \"msg\" must be an object"),
        ] {
            let err = parse_line(line, 7).err().unwrap().to_string();
            assert!(err.starts_with(text), "{err}");
        }
    }
}
