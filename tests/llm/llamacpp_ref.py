#!/usr/bin/env python3
"""llama.cpp (through llama-cpp-python) as a second reference, and its CPU speed.

    python3 tests/llm/llamacpp_ref.py --gguf PATH --input reference.json --output llamacpp.json
    python3 tests/llm/llamacpp_ref.py --gguf PATH --bench [--bench-prompt NAME] [--threads 2]

The first form evaluates, teacher-forced, the very token sequences of `--input` (a document written
by float_ref.py) with llama.cpp (`logits_all=True`: logits at every position) and writes the same
document with llama.cpp's `argmax` and `nll` (computed in float64 from llama.cpp's float32 logits),
ready for `compare.py reference.json llamacpp.json`.

`--bench` measures llama.cpp's speed on one chat prompt of prompts.json (templated by the
reference tokenizer): prompt processing (one batched decode of the prompt) and greedy generation
(one decode per token, argmax of the last logits), `--gen` tokens (the end-of-turn token does not
stop it), each the best of `--repeat` runs, with the figures llama.cpp itself records
(`llama_perf_context`) beside the wall-clock ones; prompt processing is also timed on the first
512 tokens of `--text`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from float_ref import chat_prompt_ids, find_default_gguf, load_reference_tokenizer, log_softmax_stats  # noqa: E402


def open_llama(gguf: str, n_ctx: int, threads: int, logits_all: bool):
    from llama_cpp import Llama

    return Llama(
        model_path=gguf,
        n_ctx=n_ctx,
        n_batch=512,
        n_ubatch=512,
        n_threads=threads,
        n_threads_batch=threads,
        logits_all=logits_all,
        verbose=False,
    )


def teacher_forced(args) -> None:
    with open(args.input, encoding="utf-8") as fh:
        doc = json.load(fh)
    longest = max(len(s["tokens"]) for s in doc["sequences"])
    llm = open_llama(args.gguf, max(512, longest), args.threads, logits_all=True)
    out = []
    t0 = time.time()
    for s in doc["sequences"]:
        tokens = [int(t) for t in s["tokens"]]
        llm.reset()
        llm.eval(tokens)
        logits = np.array(llm.scores[: len(tokens) - 1], dtype=np.float32)
        argmax, nll = log_softmax_stats(logits, np.asarray(tokens[1:], dtype=np.int64))
        out.append(
            {
                "name": s["name"],
                "tokens": tokens,
                "score_from": s["score_from"],
                "argmax": [int(a) for a in argmax],
                "nll": [float(v) for v in nll],
            }
        )
    with open(args.output, "w", encoding="utf-8") as fh:
        json.dump({"model": os.path.basename(args.gguf), "sequences": out}, fh)
        fh.write("\n")
    print(f"{len(out)} sequences evaluated by llama.cpp in {time.time() - t0:.1f}s -> {args.output}")


def bench(args) -> None:
    import llama_cpp

    load_before = os.getloadavg()[0]
    tok = load_reference_tokenizer(args.gguf)
    with open(args.prompts, encoding="utf-8") as fh:
        prompts = {p["name"]: p for p in json.load(fh)["prompts"]}
    prompt = chat_prompt_ids(tok, prompts[args.bench_prompt]["messages"])
    llm = open_llama(args.gguf, 512, args.threads, logits_all=False)
    ctx = llm._ctx.ctx
    n_vocab = llm.n_vocab()
    best_pp, best_tg, text = None, None, ""
    for _ in range(args.repeat):
        llm.reset()
        llm._ctx.kv_cache_clear()
        llama_cpp.llama_perf_context_reset(ctx)
        t0 = time.perf_counter()
        llm.eval(prompt)
        t_pp = time.perf_counter() - t0
        gen = []
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
        t0 = time.perf_counter()
        for _ in range(args.gen):
            nxt = int(np.argmax(logits))
            gen.append(nxt)
            llm.eval([nxt])
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
        t_tg = time.perf_counter() - t0
        perf = llama_cpp.llama_perf_context(ctx)
        pp = (len(prompt) / t_pp, perf.n_p_eval / (perf.t_p_eval_ms / 1000) if perf.t_p_eval_ms else 0.0)
        tg = (args.gen / t_tg, perf.n_eval / (perf.t_eval_ms / 1000) if perf.t_eval_ms else 0.0)
        if best_pp is None or pp[0] > best_pp[0]:
            best_pp = pp
        if best_tg is None or tg[0] > best_tg[0]:
            best_tg = tg
        text = tok.decode(gen, skip_special_tokens=False)
    # Prompt processing on a longer input: the first 512 tokens of the perplexity text.
    with open(args.text, encoding="utf-8") as fh:
        long_ids = [int(i) for i in tok.encode(fh.read(), add_special_tokens=False)][:512]
    best_long = 0.0
    for _ in range(args.repeat):
        llm.reset()
        llm._ctx.kv_cache_clear()
        t0 = time.perf_counter()
        llm.eval(long_ids)
        best_long = max(best_long, len(long_ids) / (time.perf_counter() - t0))
    print(f"llama.cpp {llama_cpp.__version__}, {args.threads} threads, prompt {args.bench_prompt!r}")
    print(llama_cpp.llama_print_system_info().decode().strip())
    print(f"prompt processing: {len(prompt)} tokens, {best_pp[0]:.1f} tok/s wall ({best_pp[1]:.1f} tok/s llama.cpp)")
    print(f"prompt processing: {len(long_ids)} tokens of the perplexity text, {best_long:.1f} tok/s wall")
    print(f"generation:        {args.gen} tokens, {best_tg[0]:.1f} tok/s wall ({best_tg[1]:.1f} tok/s llama.cpp)")
    print(f"best of {args.repeat}; 1-min load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after; greedy text: {text!r}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gguf", default=find_default_gguf())
    ap.add_argument("--input", help="document from float_ref.py whose tokens are evaluated")
    ap.add_argument("--output", help="document to write")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bench", action="store_true", help="measure speed instead")
    ap.add_argument("--prompts", default=os.path.join(HERE, "prompts.json"))
    ap.add_argument("--bench-prompt", default="story_dragon")
    ap.add_argument("--text", default=os.path.join(HERE, "perplexity.txt"))
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    if not args.gguf or not os.path.isfile(args.gguf):
        raise SystemExit(f"GGUF file not found: {args.gguf!r} (pass --gguf or set AO_CU_SMOLLM2_GGUF)")
    if args.bench:
        bench(args)
    elif args.input and args.output:
        teacher_forced(args)
    else:
        raise SystemExit("give --input and --output, or --bench")


if __name__ == "__main__":
    main()
