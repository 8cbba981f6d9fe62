#!/usr/bin/env python3
"""Fits the speech engine's confidence (control/src/speech/engine.rs, `Calibration`) on the
decisions of `speech_accuracy eval --json` over the calibration set
(`make_set.sh OUT --calibration`: voices and out-of-grammar sentences the test set does not
have), and shows what it would do on another set's decisions.

    python3 bench/speech/fit_confidence.py CAL.json[,CAL2.json...] [TEST.json...] \
        [--features=a,cover,w,lfpp] [--by-voice]

Several calibration files joined by commas are fitted together (the espeak-ng calibration
set and `make_set.sh OUT --calibration-festival`'s). It prints `z = b +k1*f1 ...`: with the default features, the engine's `Calibration`
(intercept, acoustic, coverage, worst_word, per_phone), which `speech_accuracy eval
--calibration b,k1,k2,k3,k4` tries before it goes into the engine.

A decision is a positive when its words mean what the expected ones mean (the evaluator's
`meaning_right`: "yep" for "yeah"), a negative when they do not or the speech was out of
grammar; silence is left out (the engine does not decode it). The model is a logistic regression over the features named (see FEATURES), fitted by Newton's
method with a small ridge penalty. Pure Python: no numpy needed.
"""

import json
import math
import sys

FEATURES = {
    # The best path's acoustic score per frame (the old confidence's input).
    "a": lambda d: d["acoustic_per_frame"],
    # Loud frames per phone of the hypothesis (a forced short phrase over long speech).
    "fpp": lambda d: d["loud_frames"] / max(d["phones"], 1),
    "lfpp": lambda d: math.log(max(d["loud_frames"], 1) / max(d["phones"], 1)),
    # The share of the loud frames the grammar's words cover.
    "cover": lambda d: min(d["word_frames"] / max(d["loud_frames"], 1), 1.5),
    "phones": lambda d: d["phones"],
    # The acoustic score per frame of the worst-matching word.
    "w": lambda d: d["worst_word"],
    "lphones": lambda d: math.log(max(d["phones"], 1)),
    # With `speech_accuracy eval --perturb ...` (tried and dropped): the share of the perturbed
    # copies whose meaning agrees with the hypothesis's, and their mean confidence.
    "agree": lambda d: sum(a == d["alts"][0] for a in d["alts"][1:]) / max(len(d["alts"]) - 1, 1),
    "altc": lambda d: sum(d["alt_conf"]) / max(len(d["alt_conf"]), 1),
}


def rows(path):
    with open(path) as f:
        doc = json.load(f)
    out = []
    for d in doc["decisions"]:
        if d["kind"] == "silence" or not d["text"]:
            continue
        label = 1 if d["kind"] == "in" and d["meaning_right"] else 0
        out.append((d, label))
    return out


def fit(xs, ys, ridge=1e-3, iters=50):
    n = len(xs[0])
    w = [0.0] * n
    for _ in range(iters):
        grad = [0.0] * n
        hess = [[0.0] * n for _ in range(n)]
        for x, y in zip(xs, ys):
            z = sum(wi * xi for wi, xi in zip(w, x))
            p = 1 / (1 + math.exp(-max(min(z, 30), -30)))
            for i in range(n):
                grad[i] += (p - y) * x[i]
                for j in range(n):
                    hess[i][j] += p * (1 - p) * x[i] * x[j]
        for i in range(1, n):
            grad[i] += ridge * w[i]
            hess[i][i] += ridge
        step = solve(hess, grad)
        w = [wi - si for wi, si in zip(w, step)]
    return w


def solve(a, b):
    n = len(b)
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    for c in range(n):
        p = max(range(c, n), key=lambda r: abs(m[r][c]))
        m[c], m[p] = m[p], m[c]
        for r in range(n):
            if r != c and m[c][c] != 0:
                f = m[r][c] / m[c][c]
                for k in range(c, n + 1):
                    m[r][k] -= f * m[c][k]
    return [m[i][n] / m[i][i] if m[i][i] else 0.0 for i in range(n)]


def features(d, names, scale):
    return [1.0] + [(FEATURES[f](d) - mu) / sd for f, (mu, sd) in zip(names, scale)]


def report(name, data, w, names, scale, level=0.5, by_voice=False):
    if by_voice:
        for voice in sorted({d["voice"] for d, _ in data if d["kind"] != "silence"}):
            report(f"{name} [{voice}]", [r for r in data if r[0]["voice"] == voice], w, names, scale, level)
    by = {}
    for d, label in data:
        x = features(d, names, scale)
        p = 1 / (1 + math.exp(-max(min(sum(a * b for a, b in zip(w, x)), 30), -30)))
        t = by.setdefault(d["grammar"], [0, 0, 0, 0, 0])
        if d["kind"] == "in":
            t[0] += 1
            t[1] += int(label == 1 and p >= level and d["text"] == d["expected"])
            t[2] += int(label == 1 and p >= level)
        else:
            t[3] += 1
            t[4] += int(p >= level)
    print(f"{name}: grammar accuracy (by meaning) false-accepts")
    for g, (n, ok, words, oog, fa) in sorted(by.items()):
        print(
            f"  {g:8} {100 * ok / max(n, 1):5.1f} % ({100 * words / max(n, 1):5.1f} %)"
            f"  {100 * fa / max(oog, 1):5.1f} % ({fa}/{oog})"
        )


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    names = ["a", "cover", "w", "lfpp"]
    for a in sys.argv[1:]:
        if a.startswith("--features="):
            names = a.split("=", 1)[1].split(",")
    by_voice = "--by-voice" in sys.argv[1:]
    cal = [r for path in args[0].split(",") for r in rows(path)]
    raw = [[FEATURES[f](d) for f in names] for d, _ in cal]
    scale = []
    for i in range(len(names)):
        col = [r[i] for r in raw]
        mu = sum(col) / len(col)
        sd = math.sqrt(sum((c - mu) ** 2 for c in col) / len(col)) or 1.0
        scale.append((mu, sd))
    xs = [features(d, names, scale) for d, _ in cal]
    ys = [y for _, y in cal]
    w = fit(xs, ys)
    # Back to raw units: z = b + sum(k_i * f_i).
    k = [wi / sd for wi, (_, sd) in zip(w[1:], scale)]
    b = w[0] - sum(wi * mu / sd for wi, (mu, sd) in zip(w[1:], scale))
    print("z = %.4f %s" % (b, " ".join("%+.5f*%s" % (ki, f) for ki, f in zip(k, names))))
    report("fit set", cal, w, names, scale)
    for path in args[1:]:
        report(path, rows(path), w, names, scale, by_voice=by_voice)


if __name__ == "__main__":
    main()
