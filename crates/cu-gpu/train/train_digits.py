#!/usr/bin/env python3
"""Train, quantise and evaluate the digits classifier used by the cu-gpu inference example.

Data: the 8x8 handwritten digits set that ships inside scikit-learn (1797 images, 64 pixels of
0..16, 10 classes); no download. Model: a 64 -> 32 (ReLU) -> 10 MLP trained in float64 with
scikit-learn, then quantised to int8 for the cu-gpu integer kernels:

  layer 1: acc1 = x_q . W1_q + b1_q            matmul_i8 + add(i32, broadcast bias)
           h_q  = relu_i8(requantize(acc1))    multiplier/shift from s_x * s_w1 / s_h
  layer 2: logits = h_q . W2_q + b2_q          matmul_i8 + add(i32)
           probs, class = softmax_argmax(logits, beta = s_h * s_w2 * log2(e) in Q16.16)

Pixels are already integers 0..16, so x_q = x exactly (s_x = 1). Weights are symmetric per-tensor
int8 (s_w = max|W| / 127), biases int32 in the accumulator scale, and the hidden activations are
int8 with zero point 0 and s_h = (max hidden activation on the training set) / 127.

The quantised network is evaluated with a numpy port of cu-gpu's exact integer semantics (see
crates/cu-gpu/src/cpu.rs); the Rust example `digits` recomputes it with the real kernels, on the
CPU and the GPU, and checks that all three agree on every prediction.

Outputs in --out (default: target-gpu/digits):
  model.json  the model as an inference process would receive it in a message's Data (text):
              int8 weights and int32 little-endian biases in base64, plus the fixed-point params.
  test.json   the held-out test inputs (base64 int8, n x 64), labels, the numpy port's predictions
              and both accuracies.

Usage: python3 train_digits.py [--out DIR] [--hidden 32] [--seed 0]
Needs: numpy, scikit-learn (pip install numpy scikit-learn).
"""

import argparse
import base64
import json
import math
import os
from decimal import ROUND_HALF_EVEN, Decimal, getcontext

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier


def exp2_q15_table():
    """EXP2_Q15[f] = round(2^15 * 2^(-f/256)), exactly as fixed in cu_gpu::cpu::EXP2_Q15."""
    getcontext().prec = 60
    ln2 = Decimal(2).ln()
    return np.array(
        [int(((Decimal(-f) / 256 * ln2).exp() * 32768).to_integral_value(rounding=ROUND_HALF_EVEN)) for f in range(256)],
        dtype=np.uint64,
    )


EXP2_Q15 = exp2_q15_table()


def quantize_multiplier(real):
    """real > 0 -> (multiplier, shift) with real ~= multiplier * 2^-(31 + shift), multiplier in [2^30, 2^31)."""
    frac, exp = math.frexp(real)  # real = frac * 2^exp, frac in [0.5, 1)
    multiplier = round(frac * (1 << 31))
    if multiplier == 1 << 31:
        multiplier //= 2
        exp += 1
    shift = -exp
    assert -31 <= shift <= 31, shift
    return multiplier, shift


# ---- numpy port of cu-gpu's integer kernels (crates/cu-gpu/src/cpu.rs) ----

def matmul_i8(a, b):
    """int8 (m x k) . int8 (k x n) -> int32, wrapping (int64 accumulate, then wrap)."""
    c = a.astype(np.int64) @ b.astype(np.int64)
    return ((c + 2**31) % 2**32 - 2**31).astype(np.int64)


def add_i32(a, b):
    return (a + b + 2**31) % 2**32 - 2**31


def requantize(x, multiplier, shift, zero_point):
    p = x.astype(np.int64) * multiplier
    s = 31 + shift
    r = p if s == 0 else (p + (1 << (s - 1))) >> s
    return np.clip(r + zero_point, -128, 127).astype(np.int64)


def relu(x):
    return np.maximum(x, 0)


def softmax_argmax(logits, beta):
    mx = logits.max(axis=1, keepdims=True)
    d = (mx - logits).astype(np.uint64)
    e = d * np.uint64(beta)  # < 2^64
    small = e < (1 << 21)
    e_small = np.where(small, e, 0)
    w = np.where(small, EXP2_Q15[(e_small >> np.uint64(8)) & np.uint64(255)] >> (e_small >> np.uint64(16)), 0)
    s = w.sum(axis=1, keepdims=True)
    probs = ((w << np.uint64(16)) + s // 2) // np.maximum(s, 1)
    return probs, logits.argmax(axis=1)  # argmax: first maximum


def b64(arr, dtype):
    return base64.b64encode(np.ascontiguousarray(arr, dtype=dtype).astype(np.dtype(dtype).newbyteorder("<")).tobytes()).decode()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "..", "target-gpu", "digits"))
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    digits = load_digits()
    x, y = digits.data, digits.target
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=args.seed, stratify=y)

    mlp = MLPClassifier(hidden_layer_sizes=(args.hidden,), activation="relu", alpha=1e-3, max_iter=2000, random_state=args.seed)
    mlp.fit(x_train, y_train)
    float_acc = float((mlp.predict(x_test) == y_test).mean())

    w1, w2 = mlp.coefs_  # (64 x H), (H x 10): K x N row-major, as matmul_i8 takes B
    b1, b2 = mlp.intercepts_
    s_x = 1.0
    s_w1 = np.abs(w1).max() / 127
    s_w2 = np.abs(w2).max() / 127
    w1_q = np.clip(np.round(w1 / s_w1), -127, 127).astype(np.int64)
    w2_q = np.clip(np.round(w2 / s_w2), -127, 127).astype(np.int64)
    b1_q = np.round(b1 / (s_x * s_w1)).astype(np.int64)
    h_train = np.maximum(x_train @ w1 + b1, 0)
    s_h = h_train.max() / 127
    b2_q = np.round(b2 / (s_h * s_w2)).astype(np.int64)
    mult1, shift1 = quantize_multiplier(s_x * s_w1 / s_h)
    beta = round(s_h * s_w2 * math.log2(math.e) * 65536)
    assert 0 < beta < 2**32

    def infer(xq):
        acc1 = add_i32(matmul_i8(xq, w1_q), b1_q)
        h = relu(requantize(acc1, mult1, shift1, 0))
        logits = add_i32(matmul_i8(h, w2_q), b2_q)
        return softmax_argmax(logits, beta)

    x_test_q = x_test.astype(np.int64)  # pixels 0..16 are exact int8
    _, pred = infer(x_test_q)
    quant_acc = float((pred == y_test).mean())

    model = {
        "format": "ao-tensor-mlp-v1",
        "input": {"len": 64, "scale": s_x, "note": "int8 pixels 0..16, row-major 8x8"},
        "layers": [
            {
                "in": 64, "out": args.hidden,
                "weights": b64(w1_q, np.int8), "bias": b64(b1_q, np.int32),
                "requant": {"multiplier": mult1, "shift": shift1, "zero_point": 0}, "relu": True,
            },
            {
                "in": args.hidden, "out": 10,
                "weights": b64(w2_q, np.int8), "bias": b64(b2_q, np.int32),
                "softmax_beta": beta,
            },
        ],
    }
    test = {
        "count": int(len(y_test)),
        "inputs": b64(x_test_q, np.int8),
        "labels": [int(v) for v in y_test],
        "expected_predictions": [int(v) for v in pred],
        "float_accuracy": float_acc,
        "quantized_accuracy": quant_acc,
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "model.json"), "w") as f:
        json.dump(model, f, indent=1)
    with open(os.path.join(args.out, "test.json"), "w") as f:
        json.dump(test, f)
    print(f"test images: {len(y_test)}")
    print(f"float accuracy:     {float_acc:.4f}")
    print(f"quantised accuracy: {quant_acc:.4f} (numpy port of the cu-gpu integer kernels)")
    print(f"layer 1 requant: multiplier={mult1} shift={shift1}; softmax beta={beta}")
    print(f"wrote {os.path.abspath(args.out)}/model.json and test.json")


if __name__ == "__main__":
    main()
