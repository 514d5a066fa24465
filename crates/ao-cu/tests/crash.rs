//! `kill -9` crash test of `ao-cu run` on the Lua test process.
//!
//! A log of a few hundred messages that change the memory a lot (Grow, Eval building and dropping
//! tables, Count) and roll back often (Error, Fail, failing Eval) is evaluated with a checkpoint every
//! few messages:
//! - uninterrupted into store A (timed, with a warm AOT cache);
//! - into store B with `SIGKILL` at seeded random moments (>= 50 times), restarting after each kill;
//!   the engine's phase file says what each kill interrupted (a checkpoint write, results queued but
//!   not committed, or neither). Then a deliberately truncated newest checkpoint and a stray `.tmp`
//!   file are left in B's checkpoint folder before the last restart, which must still complete.
//!
//! B must end with exactly A's results (one per position, identical `output_json`) and A's memory
//! (the run's own hash, and the hash of the memory restored from B's final checkpoint in process).
//! The test fails if no kill landed during a checkpoint write or during a result write.
//!
//! `CRASH_SEED` (u64) changes the seed, `CRASH_KILLS` the number of kills.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cu_engine::{Engine, EngineConfig};
use cu_store::{Store, StoreOptions};
use cu_wasm::{AotCache, Loader};
use serde_json::Value;

const PID: &str = "crash-proc";
const FORMAT: &str = "wasm32-unknown-emscripten2";
const MESSAGES: usize = 600;
const CHECKPOINT_EVERY: &str = "3";
const BASE_EVERY: &str = "4";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}

/// SplitMix64: a small seeded PRNG (the test's randomness; nothing of it reaches a module except
/// through the log it writes, which is the same for A and B).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in [lo, hi).
    fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = hi.saturating_sub(lo).as_micros().max(1) as u64;
        lo + Duration::from_micros(self.below(span))
    }
}

fn message(i: usize, action: &str, extra_tags: &str, data: &str) -> String {
    let msg = serde_json::json!({
        "Id": format!("msg-{i:05}"),
        "Owner": "crash-owner",
        "Target": PID,
        "From": "crash-owner",
        "Data": data,
        "Timestamp": 1_700_000_000_000u64 + i as u64 * 1000,
        "Block-Height": 1_000 + i as u64 / 10,
        "Cron": false,
        "Read-Only": false,
    });
    let mut msg = msg;
    let mut tags = vec![serde_json::json!({"name": "Action", "value": action})];
    if !extra_tags.is_empty() {
        let (name, value) = extra_tags.split_once('=').unwrap();
        tags.push(serde_json::json!({"name": name, "value": value}));
    }
    msg["Tags"] = Value::Array(tags);
    let env = serde_json::json!({
        "Process": {"Id": PID, "Owner": "crash-owner", "Tags": [{"name": "Name", "value": "crash"}]},
        "Module": {"Id": "crash-module", "Owner": "crash-owner", "Tags": []},
    });
    serde_json::json!({"msg": msg, "env": env}).to_string()
}

/// A log that grows, churns and rolls back memory.
fn write_log(path: &Path, rng: &mut Rng) {
    let mut out = String::new();
    for i in 1..=MESSAGES {
        let r = rng.below(100);
        let line = match r {
            0..=2 => message(i, "Grow", "MB=1", ""),
            3..=14 => message(i, "Error", "", ""),
            15..=24 => message(i, "Fail", "", &format!("fail {i}")),
            25..=39 => {
                let n = 50 + rng.below(500);
                let code = format!(
                    "Junk = Junk or {{}} local t = {{}} for k = 1, {n} do t[k] = {{k, string.rep('z', k % 40) .. k}} end \
                     Junk[#Junk + 1] = t return #Junk"
                );
                message(i, "Eval", "", &code)
            }
            40..=42 => message(i, "Eval", "", "Junk = {} collectgarbage() return 'dropped'"),
            43..=45 => message(
                i,
                "Eval",
                "",
                "Junk = Junk or {} Junk[#Junk + 1] = string.rep('q', 70000) error('eval failed on purpose')",
            ),
            _ => message(i, "Count", "", ""),
        };
        out.push_str(&line);
        out.push('\n');
    }
    fs::write(path, out).unwrap();
}

struct Setup {
    bin: PathBuf,
    module: PathBuf,
    log: PathBuf,
    cache: PathBuf,
}

impl Setup {
    fn command(&self, dir: &Path, log: &Path, phase: Option<&Path>) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("run")
            .arg("--data-dir")
            .arg(dir)
            .arg("--module")
            .arg(&self.module)
            .arg("--format")
            .arg(FORMAT)
            .arg("--process-id")
            .arg(PID)
            .arg("--messages")
            .arg(log)
            .arg("--checkpoint-every")
            .arg(CHECKPOINT_EVERY)
            .arg("--base-every")
            .arg(BASE_EVERY)
            .arg("--cache-dir")
            .arg(&self.cache)
            .arg("--memory-hash")
            // fsynced commits: results stay queued long enough for kills to land among them.
            .arg("--fsync");
        if let Some(p) = phase {
            cmd.arg("--phase-file").arg(p);
        }
        cmd
    }

    /// Runs to completion; the summary line and the wall time.
    fn complete(&self, dir: &Path) -> (Value, Duration) {
        self.complete_log(dir, &self.log)
    }

    fn complete_log(&self, dir: &Path, log: &Path) -> (Value, Duration) {
        let started = Instant::now();
        let out = self.command(dir, log, None).output().unwrap();
        let took = started.elapsed();
        assert!(
            out.status.success(),
            "ao-cu run failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
        (summary, took)
    }
}

/// What a kill interrupted, from the phase file `C<0|1> R<n>`.
#[derive(Debug, Default)]
struct Counts {
    checkpoint: u32,
    results: u32,
    both: u32,
    other: u32,
    before_engine: u32,
    tmp_files: u32,
}

fn classify(phase: &Path, counts: &mut Counts) -> String {
    let Ok(text) = fs::read_to_string(phase) else {
        counts.before_engine += 1;
        return "before the engine started".into();
    };
    let text = text.trim().to_string();
    let mut parts = text.split_whitespace();
    let c = parts.next().unwrap_or_default();
    let r = parts.next().unwrap_or_default();
    let in_checkpoint = c == "C1";
    let in_flight: i64 = r
        .strip_prefix('R')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("phase file {} is not `C<0|1> R<n>`: {text:?}", phase.display()));
    assert!(in_flight >= 0, "negative results in flight: {text:?}");
    if in_checkpoint {
        counts.checkpoint += 1;
    }
    if in_flight > 0 {
        counts.results += 1;
    }
    if in_checkpoint && in_flight > 0 {
        counts.both += 1;
    }
    if !in_checkpoint && in_flight == 0 {
        counts.other += 1;
    }
    text
}

fn tmp_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir.join("checkpoints").join(PID)) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "tmp"))
        .collect()
}

fn results(dir: &Path) -> Vec<(u64, String)> {
    let store = Store::open(dir, StoreOptions::default()).unwrap();
    store
        .all_results(PID)
        .unwrap()
        .into_iter()
        .map(|r| (r.pos, r.output_json))
        .collect()
}

fn same_results(got: &[(u64, String)], want: &[(u64, String)]) {
    assert_eq!(got.len(), want.len(), "result count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.0, i as u64 + 1, "exactly one result per position");
        if g != w {
            let cut = |s: &str| s.chars().take(300).collect::<String>();
            panic!(
                "result at position {} differs:\n got {}\nwant {}",
                g.0,
                cut(&g.1),
                cut(&w.1)
            );
        }
    }
}

/// The memory restored from the store's newest checkpoint (in process, without replaying anything).
fn restored_memory_hash(dir: &Path, cache: &Path) -> (u64, String, u64) {
    let store = Store::open(dir, StoreOptions::default()).unwrap();
    let loader = Loader::new(Some(AotCache::new(cache))).unwrap();
    let config = EngineConfig {
        workers: 1,
        pin_cores: false,
        dry_run_workers: 1,
        ..EngineConfig::default()
    };
    let engine = Engine::start(config, store, Arc::new(loader)).unwrap();
    let (pos, memory) = engine.state(PID).unwrap().blocking_recv().unwrap().unwrap();
    let evaluated = engine.stats().evaluated;
    engine.shutdown().unwrap();
    (pos, blake3::hash(&memory).to_hex().to_string(), evaluated)
}

fn start(setup: &Setup, dir: &Path, phase: &Path, stderr: &Path) -> Child {
    let _ = fs::remove_file(phase);
    setup
        .command(dir, &setup.log, Some(phase))
        .stdout(Stdio::null())
        .stderr(fs::File::create(stderr).unwrap())
        .spawn()
        .unwrap()
}

#[test]
fn kill_minus_9_at_random_moments_changes_nothing() {
    let module = repo().join("tests/modules/build/lua-process.wasm");
    if !module.exists() {
        let why = format!("{} (run tests/modules/build.sh)", module.display());
        if in_ci() {
            panic!("required for the tests under CI: {why}");
        }
        eprintln!("SKIPPED: {why}");
        return;
    }
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x00C0_FFEE_D15E_A5E5);
    let kills: u32 = std::env::var("CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().unwrap();
    let setup = Setup {
        bin: PathBuf::from(env!("CARGO_BIN_EXE_ao-cu")),
        module,
        log: tmp.path().join("log.jsonl"),
        cache: tmp.path().join("aot"),
    };
    write_log(&setup.log, &mut rng);

    // Fill the AOT cache (a throwaway run of the first messages), then A: uninterrupted, timed.
    let head = tmp.path().join("head.jsonl");
    let log_text = fs::read_to_string(&setup.log).unwrap();
    fs::write(&head, log_text.lines().take(3).collect::<Vec<_>>().join("\n")).unwrap();
    setup.complete_log(&tmp.path().join("warm"), &head);
    let dir_a = tmp.path().join("a");
    let (summary_a, full) = setup.complete(&dir_a);
    assert_eq!(summary_a["results"], MESSAGES as u64, "{summary_a}");
    let want = results(&dir_a);
    assert!(
        want.iter().any(|(_, o)| o.contains("\"Error\"")),
        "the log has failing messages"
    );
    // A run with nothing left to do: start-up (store, module from the AOT cache, restore) and shutdown.
    // The longer of two such runs (one can be lucky on a busy machine).
    let (idle_summary, idle) = setup.complete(&dir_a);
    assert_eq!(idle_summary["evaluated"], 0, "{idle_summary}");
    let idle = idle.max(setup.complete(&dir_a).1);
    assert_eq!(idle_summary["memory_blake3"], summary_a["memory_blake3"]);
    let work = full.saturating_sub(idle);
    eprintln!(
        "crash: uninterrupted run {full:?}, idle run {idle:?}, {} checkpoints written",
        summary_a["checkpoints_written"]
    );

    // B: killed at random moments, uniformly between 3/4 of the start-up time and `hi`, at first the
    // start-up plus a 1/kills share of the work. The start-up time of a killed run (restore, replay) is
    // hard to measure on a busy machine, so `hi` follows B's progress: it shrinks by a fifth after a kill
    // that finds B ahead of a schedule that finishes the log after 2 * kills kills, and grows by a fifth
    // otherwise. The kills spread over start-up and restore, evaluation, result commits and checkpoint
    // writes. After `kills` kills, killing goes on (up to 8 * kills) until a kill has landed during a
    // checkpoint write and one with results in flight, or until a run finishes by itself.
    let dir_b = tmp.path().join("b");
    let phase = tmp.path().join("phase");
    let stderr = tmp.path().join("stderr.txt");
    let lo = idle * 3 / 4;
    let mut hi = idle + work / kills.max(1);
    let ceiling = idle + work;
    let mut counts = Counts::default();
    let mut done = 0u32;
    let mut finished = false;
    let started = Instant::now();
    while done < 8 * kills && (done < kills || counts.checkpoint == 0 || counts.results == 0) {
        let mut child = start(&setup, &dir_b, &phase, &stderr);
        let delay = rng.between(lo, hi);
        std::thread::sleep(delay);
        if let Some(status) = child.try_wait().unwrap() {
            assert!(
                status.success(),
                "ao-cu run failed after a kill ({status}): {}",
                fs::read_to_string(&stderr).unwrap_or_default()
            );
            finished = true;
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        done += 1;
        let what = classify(&phase, &mut counts);
        counts.tmp_files += tmp_files(&dir_b).len() as u32;
        let progress = Store::open(&dir_b, StoreOptions::default())
            .and_then(|store| store.last_result_pos(PID))
            .unwrap_or(0);
        let schedule = MESSAGES as u64 * u64::from(done) / (2 * u64::from(kills.max(1)));
        hi = if progress > schedule {
            (lo + (hi - lo) * 4 / 5).max(lo + Duration::from_millis(10))
        } else {
            (hi + (hi - lo) / 5).min(ceiling)
        };
        if std::env::var_os("CRASH_VERBOSE").is_some() {
            eprintln!("kill {done} after {delay:?}: {what}; {progress} results");
        }
    }
    let kill_time = started.elapsed();

    // Before the last restart: truncate the newest checkpoint and leave a torn temporary file.
    let store = Store::open(&dir_b, StoreOptions::default()).unwrap();
    let newest = store.checkpoints(PID).unwrap().pop();
    drop(store);
    let truncated = newest.as_ref().map(|rec| {
        let path = dir_b.join(&rec.file);
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() / 3]).unwrap();
        let torn = path.with_file_name(format!("{:020}.ckpt.tmp", rec.seq + 1));
        let mut f = fs::File::create(torn).unwrap();
        f.write_all(&bytes[..bytes.len() / 5]).unwrap();
        rec.pos
    });
    let (summary_b, _) = setup.complete(&dir_b);
    eprintln!(
        "crash: {done} kills in {kill_time:?} (seed {seed:#x}): {} during a checkpoint write, {} with results \
         in flight ({} both), {} other, {} before the engine started; a run finished by itself: {finished}; {} \
         leftover .tmp files seen after kills; truncated newest checkpoint at pos {truncated:?}; final run: \
         {summary_b}",
        counts.checkpoint, counts.results, counts.both, counts.other, counts.before_engine, counts.tmp_files,
    );
    if let Some(pos) = truncated {
        // The truncated checkpoint was skipped for an older one; the messages after it were replayed.
        assert_eq!(summary_b["restored"], true, "{summary_b}");
        if pos == MESSAGES as u64 {
            assert!(summary_b["evaluated"].as_u64().unwrap() > 0, "{summary_b}");
        }
    }

    // Same results, same memory.
    same_results(&results(&dir_b), &want);
    assert_eq!(summary_b["results"], MESSAGES as u64);
    assert_eq!(summary_b["memory_blake3"], summary_a["memory_blake3"]);
    let (pos, hash, replayed) = restored_memory_hash(&dir_b, &setup.cache);
    assert_eq!(pos, MESSAGES as u64);
    assert_eq!(replayed, 0, "the final checkpoint is at the end of the log");
    assert_eq!(Value::from(hash), summary_a["memory_blake3"]);

    assert!(
        done >= kills,
        "only {done} kills before a run finished by itself (the delays are too long for this machine)"
    );
    assert!(
        counts.checkpoint > 0,
        "no kill landed during a checkpoint write: {counts:?}"
    );
    assert!(
        counts.results > 0,
        "no kill landed while results were in flight: {counts:?}"
    );
}

// ---------------------------------------------------------------- `ao-cu run` input handling

/// Runs `ao-cu run` on the Lua test process; (exit code, stdout, stderr).
fn run_cli(dir: &Path, log: &Path, cache: &Path, extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ao-cu"))
        .arg("run")
        .arg("--data-dir")
        .arg(dir)
        .arg("--module")
        .arg(repo().join("tests/modules/build/lua-process.wasm"))
        .arg("--format")
        .arg(FORMAT)
        .arg("--messages")
        .arg(log)
        .arg("--cache-dir")
        .arg(cache)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn lua_lines() -> Option<Vec<String>> {
    let module = repo().join("tests/modules/build/lua-process.wasm");
    if !module.exists() {
        let why = format!("{} (run tests/modules/build.sh)", module.display());
        if in_ci() {
            panic!("required for the tests under CI: {why}");
        }
        eprintln!("SKIPPED: {why}");
        return None;
    }
    let text = fs::read_to_string(repo().join("tests/modules/lua/messages.jsonl")).unwrap();
    Some(text.lines().map(String::from).collect())
}

#[test]
fn run_resumes_appends_only_new_lines_and_matches_eval() {
    let Some(lines) = lua_lines() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (dir, cache) = (tmp.path().join("store"), tmp.path().join("aot"));
    let half = tmp.path().join("half.jsonl");
    let full = tmp.path().join("full.jsonl");
    // A blank line is skipped and takes no position.
    fs::write(&half, format!("{}\n\n", lines[..20].join("\n"))).unwrap();
    fs::write(&full, lines.join("\n")).unwrap();
    let args = ["--process-id", "p1", "--checkpoint-every", "4", "--memory-hash"];
    let (code, out, err) = run_cli(&dir, &half, &cache, &args);
    assert_eq!(code, 0, "{err}");
    let first: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (first["appended"].as_u64(), first["results"].as_u64()),
        (Some(20), Some(20))
    );
    let (code, out, err) = run_cli(&dir, &full, &cache, &args);
    assert_eq!(code, 0, "{err}");
    let second: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(second["appended"], (lines.len() - 20) as u64, "{second}");
    assert_eq!(second["results"], lines.len() as u64);
    assert_eq!(second["restored"], true, "continued from the checkpoint at 20");
    assert_eq!(
        second["evaluated"],
        (lines.len() - 20) as u64,
        "nothing evaluated twice"
    );
    // The same outputs and final memory as `ao-cu eval` (one process, memory in between).
    let eval = Command::new(env!("CARGO_BIN_EXE_ao-cu"))
        .args(["eval", "--format", FORMAT, "--memory-hash", "--module"])
        .arg(repo().join("tests/modules/build/lua-process.wasm"))
        .arg("--messages")
        .arg(&full)
        .arg("--cache-dir")
        .arg(&cache)
        .output()
        .unwrap();
    assert!(eval.status.success());
    let eval: Vec<Value> = String::from_utf8(eval.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        eval.last().unwrap()["MemoryHash"],
        second["memory_blake3"],
        "final memory"
    );
    let store = Store::open(&dir, StoreOptions::default()).unwrap();
    let ours = store.all_results("p1").unwrap();
    assert_eq!(ours.len(), eval.len());
    for (r, mut e) in ours.into_iter().zip(eval) {
        e.as_object_mut().unwrap().remove("MemoryHash");
        let stored: Value = serde_json::from_str(&r.output_json).unwrap();
        assert_eq!(stored, e, "position {}", r.pos);
    }
}

#[test]
fn run_rejects_bad_input_with_line_numbers_and_exit_code_1() {
    let Some(lines) = lua_lines() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (dir, cache) = (tmp.path().join("store"), tmp.path().join("aot"));
    let log = tmp.path().join("log.jsonl");
    fs::write(&log, lines[..5].join("\n")).unwrap();
    let pid = ["--process-id", "p1"];
    assert_eq!(run_cli(&dir, &log, &cache, &pid).0, 0);

    // A log that disagrees with the stored one at a stored position (line 4 swapped with line 6).
    let mut other = lines[..6].to_vec();
    other.swap(3, 5);
    let bad = tmp.path().join("bad.jsonl");
    fs::write(&bad, other.join("\n")).unwrap();
    let (code, _, err) = run_cli(&dir, &bad, &cache, &pid);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("line 4: message 4 differs"), "{err}");

    // Malformed JSON, named by its line (blank lines count as lines).
    fs::write(&bad, format!("{}\n\n{{\"msg\": \n", lines[0])).unwrap();
    let (code, _, err) = run_cli(&dir, &bad, &cache, &pid);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("line 3: not valid JSON"), "{err}");

    // An env that differs from the process's.
    let mut v: Value = serde_json::from_str(&lines[5]).unwrap();
    v["env"]["Process"]["Id"] = Value::from("someone-else");
    fs::write(&bad, format!("{}\n{v}\n", lines[..5].join("\n"))).unwrap();
    let (code, _, err) = run_cli(&dir, &bad, &cache, &pid);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("line 6: env differs"), "{err}");

    // A process id that cannot name a checkpoint folder, an unknown format.
    let (code, _, err) = run_cli(&dir, &log, &cache, &["--process-id", "../x"]);
    assert_eq!(code, 1, "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_ao-cu"))
        .args(["run", "--process-id", "p1", "--format", "nope", "--data-dir"])
        .arg(&dir)
        .arg("--module")
        .arg(repo().join("tests/modules/build/lua-process.wasm"))
        .arg("--messages")
        .arg(&log)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));

    // The store directory is a file: a runtime failure.
    let file = tmp.path().join("not-a-dir");
    fs::write(&file, "x").unwrap();
    let (code, _, err) = run_cli(&file, &log, &cache, &pid);
    assert_eq!(code, 2, "{err}");

    // Nothing above changed the stored log.
    let store = Store::open(&dir, StoreOptions::default()).unwrap();
    assert_eq!(store.last_pos("p1").unwrap(), 5);
    assert_eq!(store.last_result_pos("p1").unwrap(), 5);
}
