//! `ao_tensor.model_*`: language models for processes (`docs/tensor-api.md`, "Models").
//!
//! A process opens a model by the id of the data item holding its GGUF file ([`crate::models`]); the
//! host keeps the converted weights once for the whole node and the process passes only token ids,
//! its own KV cache (a slab in its memory, so checkpoints carry it) and a logits buffer. Every result
//! is integer arithmetic fixed by `docs/llm.md`: the same bytes on every node.
//!
//! Like the other `ao_tensor` imports, a call checks every span against the memory, charges gas from
//! its shape (before any work; for fuel-bounded modules the same fuel too), and traps on any error
//! before writing anything, so the error becomes that message's `Error`. A model that cannot be had
//! now halts the evaluation instead ([`crate::models::OpenError::is_deterministic`]).

use std::sync::Arc;

use wasmtime::{Caller, FuncType, Linker, Val, ValType};

use super::tensor::charge_gas;
use super::{Args, HostTrap, Mem, memory, set_result};
use crate::error::WasmError;
use crate::models::LoadedModel;
use crate::state::HostState;

// The KV slab and the logits are read and written in place as little-endian `i32`.
const _: () = assert!(
    cfg!(target_endian = "little"),
    "ao_tensor.model_* assumes a little-endian host"
);

/// Fixed gas of every call.
const BASE_GAS: u64 = 1000;
/// Gas per byte of text tokenised.
const TOKENIZE_GAS_PER_BYTE: u64 = 64;
/// `u32` values `model_info` writes.
pub const INFO_WORDS: usize = 8;

type Body = fn(&mut Caller<'_, HostState>, &[Val]) -> wasmtime::Result<Option<i64>>;

/// One import: its body, which parameters are pointers (the others `i32`), whether it returns an `i32`.
struct Import {
    body: Body,
    pointers: &'static [bool],
    returns: bool,
}

fn import(name: &str) -> Option<Import> {
    const P: bool = true;
    const I: bool = false;
    let (body, pointers, returns): (Body, &'static [bool], bool) = match name {
        "model_open" => (open, &[P, I], true),
        "model_info" => (info, &[I, P], false),
        "model_chat" => (chat, &[I, P, I, P, I], true),
        "model_tokenize" => (tokenize, &[I, P, I, I, P, I], true),
        "model_detokenize" => (detokenize, &[I, P, I, P, I], true),
        "model_forward" => (forward, &[I, P, I, I, I, P], false),
        "model_forward_batch" => (forward_batch, &[I, P, I, I, P, I, P], false),
        _ => return None,
    };
    Some(Import {
        body,
        pointers,
        returns,
    })
}

/// Whether `name` is one of these imports.
pub fn is_model_import(name: &str) -> bool {
    import(name).is_some()
}

/// Defines `ao_tensor.<name>` (a `model_*` import) with the module's declared signature: pointers `i32`
/// or `i64`, the other parameters `i32`, and an `i32` result where the import has one.
pub fn define(linker: &mut Linker<HostState>, name: &str, ty: &FuncType) -> Result<(), WasmError> {
    let unsupported = |reason: String| WasmError::UnsupportedImport {
        module: super::tensor::MODULE.into(),
        name: name.into(),
        reason,
    };
    let Some(imp) = import(name) else {
        return Err(unsupported(
            "not an ao_tensor function (see docs/tensor-api.md)".into(),
        ));
    };
    let params: Vec<ValType> = ty.params().collect();
    let results: Vec<ValType> = ty.results().collect();
    let result_fits = if imp.returns {
        matches!(results.as_slice(), [ValType::I32])
    } else {
        results.is_empty()
    };
    let fits = result_fits
        && params.len() == imp.pointers.len()
        && params
            .iter()
            .zip(imp.pointers)
            .all(|(t, is_ptr)| matches!(t, ValType::I32) || (*is_ptr && matches!(t, ValType::I64)));
    if !fits {
        return Err(unsupported(format!(
            "unexpected signature {ty} (pointers i32 or i64, other parameters i32, {})",
            if imp.returns {
                "an i32 result"
            } else {
                "no results"
            }
        )));
    }
    let body = imp.body;
    linker
        .func_new(
            super::tensor::MODULE,
            name,
            ty.clone(),
            move |mut caller, args, results| {
                if let Some(v) = body(&mut caller, args)? {
                    set_result(results, v);
                }
                Ok(())
            },
        )
        .map(|_| ())
        .map_err(|e| WasmError::Link(e.to_string()))
}

fn trap(import: &'static str, detail: impl std::fmt::Display) -> wasmtime::Error {
    HostTrap::Tensor {
        import,
        detail: detail.to_string(),
    }
    .into()
}

/// `[ptr, ptr + bytes)` inside the current memory, or a trap naming `what`.
fn check_span(
    caller: &Caller<'_, HostState>,
    import: &'static str,
    what: &str,
    ptr: u64,
    bytes: Option<u64>,
) -> wasmtime::Result<u64> {
    let size = memory(caller)?.data_size(caller) as u64;
    match bytes {
        Some(b) if ptr.checked_add(b).is_some_and(|end| end <= size) => Ok(b),
        Some(b) => Err(trap(
            import,
            format!("out of bounds: {what} at {ptr}+{b} > memory {size}"),
        )),
        None => Err(trap(
            import,
            format!("out of bounds: {what} at {ptr}+<overflow> > memory {size}"),
        )),
    }
}

/// The open model behind argument `i`.
fn model(
    caller: &Caller<'_, HostState>,
    import: &'static str,
    handle: u64,
) -> wasmtime::Result<Arc<LoadedModel>> {
    caller
        .data()
        .models
        .get(handle as u32)
        .filter(|_| handle <= u64::from(u32::MAX))
        .ok_or_else(|| {
            trap(
                import,
                format!("{handle} is not a model this message opened (model_open)"),
            )
        })
}

/// `model_open(id, id_len) -> handle`: opens the model in data item `id` (UTF-8 text, `id_len` bytes).
fn open(caller: &mut Caller<'_, HostState>, args: &[Val]) -> wasmtime::Result<Option<i64>> {
    const NAME: &str = "model_open";
    let (ptr, len) = (args.u(0), args.u(1));
    if len > 256 {
        return Err(trap(NAME, format!("an id of {len} bytes (at most 256)")));
    }
    check_span(caller, NAME, "id", ptr, Some(len))?;
    charge_gas(caller, BASE_GAS + len)?;
    let id = {
        let mem = Mem::of(caller)?;
        String::from_utf8(mem.bytes(ptr, len)?.to_vec()).map_err(|_| trap(NAME, "the id is not UTF-8"))?
    };
    let Some(host) = caller.data().model_host.clone() else {
        return Err(trap(NAME, "this node serves no models to processes"));
    };
    let loaded = match host.registry.open(&id, host.source.as_ref()) {
        Ok(m) => m,
        Err(e) if e.is_deterministic() => return Err(trap(NAME, e)),
        Err(e) => return Err(HostTrap::Halt(e.to_string()).into()),
    };
    Ok(Some(i64::from(caller.data_mut().models.handle_of(loaded))))
}

/// `model_info(handle, out)`: writes [`INFO_WORDS`] little-endian `u32`: vocabulary size, trained
/// context length, layers, embedding width, KV bytes per position, bos id, eos id, 0.
fn info(caller: &mut Caller<'_, HostState>, args: &[Val]) -> wasmtime::Result<Option<i64>> {
    const NAME: &str = "model_info";
    let m = model(caller, NAME, args.u(0))?;
    let out = args.u(1);
    check_span(caller, NAME, "out", out, Some(4 * INFO_WORDS as u64))?;
    charge_gas(caller, BASE_GAS)?;
    let c = m.model.config();
    let words = [
        c.n_vocab,
        c.context_length,
        c.n_layer,
        c.n_embd,
        c.kv_bytes_per_position(),
        m.tokenizer.bos() as usize,
        m.tokenizer.eos() as usize,
        0,
    ];
    let bytes: Vec<u8> = words.iter().flat_map(|&w| (w as u32).to_le_bytes()).collect();
    Mem::of(caller)?.write(out, &bytes)?;
    Ok(None)
}

/// The text argument at `(ptr, len)`, UTF-8.
fn text_arg(
    caller: &mut Caller<'_, HostState>,
    import: &'static str,
    ptr: u64,
    len: u64,
) -> wasmtime::Result<String> {
    let mem = Mem::of(caller)?;
    String::from_utf8(mem.bytes(ptr, len)?.to_vec()).map_err(|_| trap(import, "the text is not UTF-8"))
}

/// `n` little-endian `u32` token ids at `ptr` (bounds checked by the caller).
fn read_ids(caller: &mut Caller<'_, HostState>, ptr: u64, n: u64) -> wasmtime::Result<Vec<u32>> {
    let mem = Mem::of(caller)?;
    Ok(mem
        .bytes(ptr, 4 * n)?
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Writes up to `cap` of `ids` at `out` and answers how many there are.
fn write_ids(
    caller: &mut Caller<'_, HostState>,
    out: u64,
    cap: u64,
    ids: &[u32],
) -> wasmtime::Result<Option<i64>> {
    let n = ids.len().min(cap as usize);
    let bytes: Vec<u8> = ids[..n].iter().flat_map(|id| id.to_le_bytes()).collect();
    Mem::of(caller)?.write(out, &bytes)?;
    Ok(Some(ids.len().min(i32::MAX as usize) as i64))
}

/// Checks the text and output spans and charges a tokenisation.
fn tokenize_prelude(
    caller: &mut Caller<'_, HostState>,
    import: &'static str,
    args: &[Val],
    text: usize,
    out: usize,
) -> wasmtime::Result<(Arc<LoadedModel>, String)> {
    let m = model(caller, import, args.u(0))?;
    let (tp, tl) = (args.u(text), args.u(text + 1));
    let (op, cap) = (args.u(out), args.u(out + 1));
    check_span(caller, import, "text", tp, Some(tl))?;
    check_span(caller, import, "out", op, cap.checked_mul(4))?;
    charge_gas(caller, BASE_GAS + TOKENIZE_GAS_PER_BYTE * tl + 4 * cap)?;
    let text = text_arg(caller, import, tp, tl)?;
    Ok((m, text))
}

/// `model_chat(handle, text, text_len, out, cap) -> count`: the token ids of the model's chat template
/// with one user message `text` and the assistant's turn opened (llama.cpp's
/// `llama_chat_apply_template` + `llama_tokenize(parse_special = true)`); writes at most `cap` ids.
fn chat(caller: &mut Caller<'_, HostState>, args: &[Val]) -> wasmtime::Result<Option<i64>> {
    const NAME: &str = "model_chat";
    let (m, text) = tokenize_prelude(caller, NAME, args, 1, 3)?;
    let rendered = m
        .tokenizer
        .apply_chat_template(&[cu_llm::tokenizer::ChatMessage::user(text)], true);
    let ids = m.tokenizer.encode(&rendered);
    write_ids(caller, args.u(3), args.u(4), &ids)
}

/// `model_tokenize(handle, text, text_len, special, out, cap) -> count`: the ids of `text`; with
/// `special` non-zero, special tokens written in the text (`<|im_start|>`) are recognised.
fn tokenize(caller: &mut Caller<'_, HostState>, args: &[Val]) -> wasmtime::Result<Option<i64>> {
    const NAME: &str = "model_tokenize";
    let (m, text) = tokenize_prelude(caller, NAME, args, 1, 4)?;
    let ids = m.tokenizer.encode_with(&text, args.u(3) != 0);
    write_ids(caller, args.u(4), args.u(5), &ids)
}

/// `model_detokenize(handle, ids, n, out, cap) -> bytes`: the text of `n` ids (their bytes
/// concatenated; special tokens as their text); writes at most `cap` bytes.
fn detokenize(caller: &mut Caller<'_, HostState>, args: &[Val]) -> wasmtime::Result<Option<i64>> {
    const NAME: &str = "model_detokenize";
    let m = model(caller, NAME, args.u(0))?;
    let (ip, n, op, cap) = (args.u(1), args.u(2), args.u(3), args.u(4));
    check_span(caller, NAME, "ids", ip, n.checked_mul(4))?;
    check_span(caller, NAME, "out", op, Some(cap))?;
    charge_gas(caller, BASE_GAS + 4 * n + cap)?;
    let ids = read_ids(caller, ip, n)?;
    let bytes = m.tokenizer.decode_bytes(&ids).map_err(|e| trap(NAME, e))?;
    let k = bytes.len().min(cap as usize);
    Mem::of(caller)?.write(op, &bytes[..k])?;
    Ok(Some(bytes.len().min(i32::MAX as usize) as i64))
}

/// `model_forward(handle, kv, capacity, pos, token, logits)`: runs `token` at position `pos` over the
/// process's KV slab at `kv` (`capacity` positions, KV-bytes-per-position each, 4-byte aligned;
/// positions `0..pos` as earlier calls left them), writes position `pos` into the slab and the
/// next-token logits (`i32` Q16, vocabulary-size values) at `logits`.
fn forward(caller: &mut Caller<'_, HostState>, args: &[Val]) -> wasmtime::Result<Option<i64>> {
    const NAME: &str = "model_forward";
    let m = model(caller, NAME, args.u(0))?;
    let (kv, capacity, pos, token, lp) = (args.u(1), args.u(2), args.u(3), args.u(4), args.u(5));
    let c = m.model.config();
    let kv_bytes = check_slab(caller, NAME, c, kv, capacity, pos, 1, lp)?;
    charge_gas(caller, step_gas(c, pos))?;
    run_on_slab(
        caller,
        NAME,
        &m,
        kv,
        kv_bytes,
        lp,
        Box::new(move |model, slab, scratch, logits| {
            model.forward_slab(
                slab,
                capacity as usize,
                pos as usize,
                scratch,
                token as u32,
                logits,
            )
        }),
    )
}

/// The checks of a KV slab for `n` positions from `pos` and of the logits buffer: the capacity within
/// the model's context, room for the positions, a 4-byte aligned slab inside the memory, the logits
/// inside it. Answers the slab's byte length.
#[allow(clippy::too_many_arguments)]
fn check_slab(
    caller: &Caller<'_, HostState>,
    import: &'static str,
    c: &cu_llm::model::ModelConfig,
    kv: u64,
    capacity: u64,
    pos: u64,
    n: u64,
    lp: u64,
) -> wasmtime::Result<u64> {
    if capacity == 0 || capacity > c.context_length as u64 {
        return Err(trap(
            import,
            format!(
                "capacity {capacity} is outside [1, {}] (the model's context)",
                c.context_length
            ),
        ));
    }
    if pos.saturating_add(n) > capacity {
        let at = if n == 1 {
            format!("position {pos} is")
        } else {
            format!("positions {pos}..{} are", pos + n)
        };
        return Err(trap(import, format!("{at} past the slab's capacity {capacity}")));
    }
    if !kv.is_multiple_of(4) {
        return Err(trap(import, format!("the KV slab at {kv} is not 4-byte aligned")));
    }
    let kv_bytes = check_span(
        caller,
        import,
        "kv",
        kv,
        capacity.checked_mul(c.kv_bytes_per_position() as u64),
    )?;
    check_span(caller, import, "logits", lp, Some(4 * c.n_vocab as u64))?;
    Ok(kv_bytes)
}

/// The gas of one token step at position `pos`: `1000 + MACs(pos) + KV bytes read + logits bytes`.
fn step_gas(c: &cu_llm::model::ModelConfig, pos: u64) -> u64 {
    (BASE_GAS + c.step_macs(pos as usize))
        .saturating_add((c.kv_bytes_per_position() as u64).saturating_mul(pos + 1))
        .saturating_add(4 * c.n_vocab as u64)
}

/// A forward pass over a caller's slab and logits buffer (`Model::forward_slab` or its batch).
type SlabPass<'a> = dyn FnOnce(
        &cu_llm::model::Model,
        &mut [i32],
        &mut cu_llm::model::Scratch,
        &mut [i32],
    ) -> Result<(), cu_llm::model::ModelError>
    + 'a;

/// Runs `pass` over the process's KV slab (`kv_bytes` at `kv`, borrowed in place) and writes the logits
/// it produced at `lp`; nothing is written when it fails.
fn run_on_slab(
    caller: &mut Caller<'_, HostState>,
    import: &'static str,
    m: &Arc<LoadedModel>,
    kv: u64,
    kv_bytes: u64,
    lp: u64,
    pass: Box<SlabPass<'_>>,
) -> wasmtime::Result<Option<i64>> {
    let mut scratch = caller.data_mut().models.take_scratch(m);
    let mut logits = vec![0i32; m.model.config().n_vocab];
    let result = {
        let mem = Mem::of(caller)?;
        let region = &mut mem.data[kv as usize..(kv + kv_bytes) as usize];
        // SAFETY: every bit pattern is a valid `i32`; the region is borrowed mutably for the call.
        let (head, slab, tail) = unsafe { region.align_to_mut::<i32>() };
        if !head.is_empty() || !tail.is_empty() {
            Err(trap(
                import,
                format!("the KV slab at {kv} is not 4-byte aligned in the host's memory"),
            ))
        } else {
            pass(&m.model, slab, &mut scratch, &mut logits).map_err(|e| trap(import, e))
        }
    };
    caller.data_mut().models.put_scratch(m, scratch);
    result?;
    let bytes: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
    Mem::of(caller)?.write(lp, &bytes)?;
    Ok(None)
}

/// The most tokens one `model_forward_batch` call takes.
pub const MAX_BATCH: u64 = 4096;

/// `model_forward_batch(handle, kv, capacity, pos, tokens, n, logits)`: `model_forward` of the `n` ids
/// at `tokens` at positions `pos .. pos + n` in one pass (a prompt), the logits after the last. The slab
/// and the logits are the same bytes, and the gas the same sum, as `n` calls of `model_forward`.
fn forward_batch(caller: &mut Caller<'_, HostState>, args: &[Val]) -> wasmtime::Result<Option<i64>> {
    const NAME: &str = "model_forward_batch";
    let m = model(caller, NAME, args.u(0))?;
    let (kv, capacity, pos, tp, n, lp) = (args.u(1), args.u(2), args.u(3), args.u(4), args.u(5), args.u(6));
    let c = m.model.config();
    if n == 0 || n > MAX_BATCH {
        return Err(trap(NAME, format!("a batch of {n} tokens (1 to {MAX_BATCH})")));
    }
    let kv_bytes = check_slab(caller, NAME, c, kv, capacity, pos, n, lp)?;
    check_span(caller, NAME, "tokens", tp, Some(4 * n))?;
    let gas = (pos..pos + n).fold(0u64, |g, p| g.saturating_add(step_gas(c, p)));
    charge_gas(caller, gas)?;
    let tokens = read_ids(caller, tp, n)?;
    run_on_slab(
        caller,
        NAME,
        &m,
        kv,
        kv_bytes,
        lp,
        Box::new(move |model, slab, scratch, logits| {
            model.forward_slab_batch(slab, capacity as usize, pos as usize, scratch, &tokens, logits)
        }),
    )
}
