#!/usr/bin/env python3
"""Compare two evaluation documents: teacher-forced top-1 agreement and perplexity.

    python3 tests/llm/compare.py reference.json other.json [--min-agreement 0.95] [--max-ppl-ratio 1.05]

Both documents must hold the same sequences with identical `tokens` and `score_from` (the second
is an evaluation of the first's token sequences). Agreement counts, over the prompt sequences
(every sequence except the perplexity text), the positions i >= score_from where both documents'
`argmax[i]` are equal. Perplexity is exp(mean nll[i], i >= score_from) of the perplexity-text
sequence (named `perplexity_text`, or chosen with --text-name) in each document; the ratio is
other / reference. Exit status 1 when agreement < --min-agreement or when the perplexities differ
by more than --max-ppl-ratio (either way: max(a, b) / min(a, b)); 2 for unusable input.
"""

from __future__ import annotations

import argparse
import json
import math
import sys


class BadInput(Exception):
    """A document that cannot be compared."""


def load(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError) as err:
        raise BadInput(f"{path}: {err}") from err
    seqs = doc.get("sequences") if isinstance(doc, dict) else None
    if not isinstance(seqs, list) or not seqs:
        raise BadInput(f"{path}: no 'sequences' list")
    for s in seqs:
        for key in ("name", "tokens", "score_from", "argmax", "nll"):
            if key not in s:
                raise BadInput(f"{path}: sequence {s.get('name')!r} has no {key!r}")
        n = len(s["tokens"]) - 1
        if n < 1 or len(s["argmax"]) != n or len(s["nll"]) != n:
            raise BadInput(
                f"{path}: sequence {s['name']!r}: {len(s['tokens'])} tokens need {n} argmax and nll "
                f"entries, found {len(s['argmax'])} and {len(s['nll'])}"
            )
        if not 0 <= s["score_from"] < n:
            raise BadInput(f"{path}: sequence {s['name']!r}: score_from {s['score_from']} out of range")
        bad = [v for v in s["nll"][s["score_from"] :] if not isinstance(v, (int, float)) or not math.isfinite(v)]
        if bad:
            raise BadInput(f"{path}: sequence {s['name']!r}: non-finite nll values {bad[:3]}")
    return doc


def perplexity(seq: dict) -> float:
    scored = seq["nll"][seq["score_from"] :]
    return math.exp(sum(scored) / len(scored))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reference")
    ap.add_argument("other")
    ap.add_argument("--min-agreement", type=float, default=0.95, help="fraction, default 0.95")
    ap.add_argument("--max-ppl-ratio", type=float, default=1.05, help="default 1.05")
    ap.add_argument("--text-name", default="perplexity_text")
    ap.add_argument("--quiet", action="store_true", help="summary only, no per-sequence table")
    args = ap.parse_args(argv)
    try:
        ref, oth = load(args.reference), load(args.other)
        by_name = {s["name"]: s for s in oth["sequences"]}
        if len(by_name) != len(oth["sequences"]) or len(ref["sequences"]) != len(oth["sequences"]):
            raise BadInput("the documents do not hold the same set of sequences")
        rows, text = [], None
        for rs in ref["sequences"]:
            os_ = by_name.get(rs["name"])
            if os_ is None:
                raise BadInput(f"sequence {rs['name']!r} missing from {args.other}")
            if os_["tokens"] != rs["tokens"] or os_["score_from"] != rs["score_from"]:
                raise BadInput(f"sequence {rs['name']!r}: tokens or score_from differ; refusing to compare")
            if rs["name"] == args.text_name:
                text = (rs, os_)
                continue
            lo = rs["score_from"]
            same = sum(a == b for a, b in zip(rs["argmax"][lo:], os_["argmax"][lo:]))
            rows.append((rs["name"], same, len(rs["argmax"]) - lo, perplexity(rs), perplexity(os_)))
        if text is None:
            raise BadInput(f"no sequence named {args.text_name!r}")
    except BadInput as err:
        print(f"compare.py: {err}", file=sys.stderr)
        return 2

    if not args.quiet:
        w = max(len(r[0]) for r in rows)
        print(f"{'sequence':<{w}}  {'agree':>9}  {'%':>6}  {'ppl ref':>8}  {'ppl other':>9}")
        for name, same, n, pr, po in rows:
            print(f"{name:<{w}}  {same:>4}/{n:<4}  {100 * same / n:6.1f}  {pr:8.3f}  {po:9.3f}")
        print()
    same = sum(r[1] for r in rows)
    total = sum(r[2] for r in rows)
    agreement = same / total if total else 0.0
    ppl_ref, ppl_oth = perplexity(text[0]), perplexity(text[1])
    ratio = ppl_oth / ppl_ref
    spread = max(ratio, 1 / ratio)
    text_agree = sum(a == b for a, b in zip(text[0]["argmax"], text[1]["argmax"])) / len(text[0]["argmax"])
    ok_agree = agreement >= args.min_agreement
    ok_ppl = spread <= args.max_ppl_ratio
    print(f"reference: {args.reference} ({ref.get('model', '?')})")
    print(f"other:     {args.other} ({oth.get('model', '?')})")
    print(
        f"top-1 agreement over {len(rows)} prompts: {same}/{total} = {100 * agreement:.2f} %"
        f"  (goal >= {100 * args.min_agreement:.1f} %)  {'PASS' if ok_agree else 'FAIL'}"
    )
    print(
        f"perplexity on {args.text_name} ({len(text[0]['nll']) - text[0]['score_from']} tokens): "
        f"reference {ppl_ref:.4f}, other {ppl_oth:.4f}, ratio {ratio:.4f}"
        f"  (goal within x{args.max_ppl_ratio})  {'PASS' if ok_ppl else 'FAIL'}"
    )
    print(f"(top-1 agreement on the text itself: {100 * text_agree:.2f} %, for information)")
    return 0 if ok_agree and ok_ppl else 1


if __name__ == "__main__":
    sys.exit(main())
