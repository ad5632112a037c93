#!/usr/bin/env python3
"""Evaluates the classify model on the held-out splits of ../shared/data/ and prints the figures.

Usage (from the project root; the same environment as scripts/train-classifier.py):

    /tmp/clsvenv/bin/python scripts/eval-classifier.py [--model PATH] [--split test|val]

Predictions come from the Rust model itself (`cargo run --release -p routing-core --example
classifier-features -- predict`), so the figures are those of the code that serves. The splits and
prompt construction are those of scripts/train-classifier.py (imported, not copied); see its module
doc for how task and needs-strong labels are defined.

Sections:
1. task accuracy on the held-out split (instruction templates never seen in training) against the
   majority class and the old hand-weighted heuristic, with the reason-vs-rest accuracy that the
   routing rule depends on, and the calibration of the task probability (ECE, reliability table);
   and how sure it is on ambiguous prompts (soft-labelled constructions);
2. the hand-written prompts of crates/routing-core/tests/fixtures/classifier-prompts.jsonl;
3. difficulty on RouteLLM MMLU held-out questions: AUC of needs_strong against "weak wrong, strong
   right" and against "weak wrong", accuracy and log-loss against the base rate, calibration, and
   what each difficulty tier holds;
4. routing gain: route to the strong model only the questions the model ranks most likely to need
   it, at each share of strong calls, against always-weak, always-strong, random routing at the
   same share, and the oracle.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("train_classifier", ROOT / "scripts/train-classifier.py")
tc = importlib.util.module_from_spec(spec)
sys.modules["train_classifier"] = tc
spec.loader.exec_module(tc)

PROMPTS = ROOT / "crates/routing-core/tests/fixtures/classifier-prompts.jsonl"


def rust(mode: str, texts: list[str], extra: list[str] | None = None) -> list[dict]:
    cmd = ["cargo", "run", "--release", "--quiet", "-p", "routing-core", "--example", "classifier-features", "--", mode]
    stdin = "".join(json.dumps(t) + "\n" for t in texts).encode("utf-8")
    done = subprocess.run(cmd + (extra or []), cwd=ROOT, input=stdin, capture_output=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr.decode(errors='replace')}")
    out = done.stdout
    return [json.loads(line) for line in out.decode("utf-8").splitlines()]


def reliability(conf: np.ndarray, correct: np.ndarray, bins: int = 10) -> tuple[float, list[str]]:
    """Expected calibration error over equal-width bins, and the table."""
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    lines = [f"    {'bin':>11}  {'n':>5}  {'mean p':>6}  {'observed':>8}"]
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf >= lo) & ((conf < hi) if hi < 1 else (conf <= hi))
        if not m.any():
            continue
        gap = abs(correct[m].mean() - conf[m].mean())
        ece += gap * m.sum() / len(conf)
        lines.append(f"    [{lo:.1f}, {hi:.1f}{']' if hi == 1 else ')'}  {m.sum():>5}  {conf[m].mean():>6.3f}  {correct[m].mean():>8.3f}")
    return ece, lines


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def task_section(rows, preds, heur) -> None:
    tasks = tc.TASKS
    y = np.array([tasks.index(r.task) for r in rows])
    probs = np.array([[p["tasks"][t] for t in tasks] for p in preds])
    pred = probs.argmax(1)
    conf = probs.max(1)
    hpred = np.array([tasks.index(h["task"]) if h["task"] in tasks else -1 for h in heur])
    counts = Counter(y.tolist())
    majority = max(counts.values()) / len(y)
    print(f"1. Task on held-out prompts: n={len(y)} ({', '.join(f'{tasks[k]} {v}' for k, v in sorted(counts.items()))})")
    print(f"   accuracy: model {pct(np.mean(pred == y))}, majority class {pct(majority)}, heuristic {pct(np.mean(hpred == y))}")
    r = tasks.index("reason")
    print(
        f"   reason vs rest (what the route depends on): model {pct(np.mean((pred == r) == (y == r)))}, "
        f"majority {pct(max(np.mean(y == r), 1 - np.mean(y == r)))}, heuristic {pct(np.mean((hpred == r) == (y == r)))}"
    )
    print("   confusion (rows true, columns predicted):")
    print("    " + " " * 10 + "".join(f"{t:>10}" for t in tasks))
    for i, t in enumerate(tasks):
        print("    " + f"{t:>10}" + "".join(f"{np.sum((y == i) & (pred == j)):>10}" for j in range(len(tasks))))
    by = defaultdict(list)
    for row, ok in zip(rows, pred == y):
        by[row.source.split(":")[0]].append(ok)
    print("   by construction: " + ", ".join(f"{k} {pct(np.mean(v))} (n={len(v)})" for k, v in sorted(by.items())))
    op = defaultdict(list)
    for row, ok in zip(rows, pred == y):
        if row.task == "classify" and not row.text.startswith(("Text:", "Is this")):
            op[" ".join(row.text.split()[:3])].append(ok)
    print("   classify prompts by opening words: " + ", ".join(f"'{k}' {pct(np.mean(v))}" for k, v in sorted(op.items(), key=lambda kv: -len(kv[1]))[:8]))
    ece, table = reliability(conf, (pred == y).astype(float))
    print(f"   calibration of the task probability: ECE {ece:.3f}")
    print("\n".join(table))


def prompts_section(model_args) -> None:
    items = [json.loads(line) for line in PROMPTS.read_text(encoding="utf-8").splitlines() if line.strip()]
    preds = rust("predict", [i["text"] for i in items], model_args)
    clear = [(i, p) for i, p in zip(items, preds) if not i.get("ambiguous")]
    amb = [(i, p) for i, p in zip(items, preds) if i.get("ambiguous")]
    top = lambda p: max(p["tasks"], key=p["tasks"].get)
    acc = np.mean([top(p) == i["task"] for i, p in clear])
    maj = max(Counter(i["task"] for i, _ in clear).values()) / len(clear)
    print(f"2. Hand-written prompts ({PROMPTS.relative_to(ROOT)}, never trained on): {len(clear)} clear, {len(amb)} ambiguous")
    print(f"   task accuracy on the clear ones: {pct(acc)} (majority {pct(maj)})")
    print(
        f"   mean confidence: clear {np.mean([p['confidence'] for _, p in clear]):.3f}, "
        f"ambiguous {np.mean([p['confidence'] for _, p in amb]):.3f}"
    )
    for i, p in amb + [x for x in clear if top(x[1]) != x[0]["task"]]:
        tag = "ambiguous" if i.get("ambiguous") else f"MISS (labelled {i['task']})"
        print(f"    {tag:<24} {top(p):>8} p={p['tasks'][top(p)]:.2f} conf={p['confidence']:.2f}  {i['text'][:70]!r}")


def difficulty_section(rows, preds, heur, thresholds) -> np.ndarray:
    ns = np.array([r.needs_strong for r in rows])
    weak = np.array([r.weak for r in rows])
    strong = np.array([r.strong for r in rows])
    p = np.array([x["needs_strong"] for x in preds])
    base = ns.mean()
    print(f"3. Difficulty on held-out MMLU questions as given: n={len(rows)}, needs strong {pct(base)}, weak wrong {pct(1 - weak.mean())}")
    print(f"   AUC of needs_strong: vs needs strong {roc_auc_score(ns, p):.3f}, vs weak wrong {roc_auc_score(1 - weak, p):.3f}")
    eps = 1e-7
    ll = -np.mean(ns * np.log(p + eps) + (1 - ns) * np.log(1 - p + eps))
    ll0 = -(base * np.log(base) + (1 - base) * np.log(1 - base))
    print(f"   log-loss {ll:.4f} vs {ll0:.4f} for the base rate; Brier {np.mean((p - ns) ** 2):.4f} vs {base * (1 - base):.4f}")
    print(f"   accuracy at p >= 0.5: {pct(np.mean((p >= 0.5) == ns))} (majority {pct(max(base, 1 - base))}; the model rarely reaches 0.5, max p {p.max():.2f})")
    ece, table = reliability(p, ns.astype(float))
    print(f"   calibration of needs_strong: ECE {ece:.3f}")
    print("\n".join(table))
    tier = np.where(p >= thresholds["hard_from"], "hard", np.where(p >= thresholds["medium_from"], "medium", "simple"))
    print(f"   tiers (medium from {thresholds['medium_from']}, hard from {thresholds['hard_from']}):")
    for name in ["simple", "medium", "hard"]:
        m = tier == name
        if m.any():
            print(f"    {name:>6}: {pct(m.mean()):>6} of questions, needs strong {pct(ns[m].mean())}, weak right {pct(weak[m].mean())}, strong right {pct(strong[m].mean())}")
    ht = np.array([h["difficulty"] for h in heur])
    print("   the heuristic's tiers, for comparison:")
    for name in ["simple", "medium", "hard"]:
        m = ht == name
        if m.any():
            print(f"    {name:>6}: {pct(m.mean()):>6} of questions, needs strong {pct(ns[m].mean())}, weak right {pct(weak[m].mean())}")
    return tier


def routing_section(rows, preds, tier) -> None:
    weak = np.array([r.weak for r in rows], dtype=float)
    strong = np.array([r.strong for r in rows], dtype=float)
    p = np.array([x["needs_strong"] for x in preds])
    n = len(rows)
    aw, as_ = weak.mean(), strong.mean()
    order = np.argsort(-p, kind="stable")
    gain = (strong - weak)[order]
    curve = aw + np.concatenate([[0.0], np.cumsum(gain)]) / n  # accuracy after routing the top k
    oracle_gain = np.sort(strong - weak)[::-1]
    oracle = aw + np.concatenate([[0.0], np.cumsum(oracle_gain)]) / n
    shares = np.arange(n + 1) / n
    random_acc = aw + shares * (as_ - aw)
    gap = as_ - aw
    print(f"4. Routing gain on held-out MMLU (n={n}): always weak {pct(aw)}, always strong {pct(as_)}, oracle best {pct(oracle.max())}")
    print(f"    {'strong share':>12}  {'classifier':>10}  {'random':>7}  {'oracle':>7}  {'gap recovered':>13}  {'random':>7}")
    for s in [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]:
        k = int(round(s * n))
        print(
            f"    {pct(s):>12}  {pct(curve[k]):>10}  {pct(random_acc[k]):>7}  {pct(oracle[k]):>7}  "
            f"{pct((curve[k] - aw) / gap):>13}  {pct(s):>7}"
        )
    apgr = np.trapezoid((curve - aw) / gap, shares)
    print(f"   average gap recovered over all shares (APGR): classifier {apgr:.3f}, random 0.500, oracle {np.trapezoid(np.minimum((oracle - aw) / gap, 10), shares):.3f}")
    for target in [0.5, 0.8]:
        k = int(np.argmax((curve - aw) / gap >= target))
        print(f"   strong calls needed to recover {pct(target)} of the gap: classifier {pct(k / n)}, random {pct(target)}")
    for name, mask in [("hard", tier == "hard"), ("medium or hard", tier != "simple")]:
        acc = np.where(mask, strong, weak).mean()
        print(
            f"   tier rule, {name} to strong: {pct(mask.mean())} strong calls, accuracy {pct(acc)}, "
            f"random at that share {pct(aw + mask.mean() * gap)}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="model file (default: the compiled-in crates/routing-core/models/classifier.json)")
    ap.add_argument("--split", default="test", choices=["val", "test"])
    args = ap.parse_args()
    model_args = [args.model] if args.model else []
    model_path = Path(args.model) if args.model else tc.MODEL_PATH
    model = json.loads(model_path.read_text(encoding="utf-8"))
    cmd = "python scripts/eval-classifier.py" + "".join(f" {a}" for a in sys.argv[1:])
    print(f"$ {cmd}")
    print(f"model {model['id']} ({model_path.stat().st_size} bytes), split {args.split}, data {tc.DATA}")
    print()
    rows = tc.datasets()[args.split]
    task_rows = [r for r in rows if r.task is not None]
    texts = [r.text for r in task_rows]
    task_preds = rust("predict", texts, model_args)
    task_section(task_rows, task_preds, rust("heuristic", texts))
    soft_rows = [r for r in rows if r.soft is not None]
    soft_preds = rust("predict", [r.text for r in soft_rows], model_args)
    print("   ambiguous prompts built with soft labels (no right answer; how sure the model is):")
    print(f"    {'prompts':<28} {'n':>5}  {'top task p':>10}  {'confidence':>10}")
    groups = [("clear (the rows above)", task_preds)]
    for source in ["open-ended", "underspecified"]:
        groups.append((source, [p for r, p in zip(soft_rows, soft_preds) if r.source == source]))
    for name, preds in groups:
        top = np.mean([max(p["tasks"].values()) for p in preds])
        conf = np.mean([p["confidence"] for p in preds])
        print(f"    {name:<28} {len(preds):>5}  {top:>10.3f}  {conf:>10.3f}")
    print()
    prompts_section(model_args)
    print()
    mmlu = [r for r in rows if r.weak is not None]
    mtexts = [r.text for r in mmlu]
    preds = rust("predict", mtexts, model_args)
    tier = difficulty_section(mmlu, preds, rust("heuristic", mtexts), model["difficulty_thresholds"])
    print()
    routing_section(mmlu, preds, tier)
    print()
    # The confidence is the task's probability (needs_strong is an expected gain, not a yes/no call).
    reason = np.array([max(p["tasks"], key=p["tasks"].get) == "reason" for p in preds])
    conf = np.array([p["confidence"] for p in preds])
    ece, table = reliability(conf, reason.astype(float))
    print(f"5. Overall confidence on held-out MMLU (right = task reason): ECE {ece:.3f}")
    print("\n".join(table))


if __name__ == "__main__":
    main()
