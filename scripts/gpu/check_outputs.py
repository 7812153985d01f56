#!/usr/bin/env python3
"""Compares two imgpipe output folders of the same inputs (first light, scripts/gpu): every
input is listed once, in the same order, written in both (or skipped in both), and the raw
model outputs (outputs-*.npy, model.output: logits) agree within --tol of the largest |value|.
With --want-shrink, the second run's report must show at least one governor shrink. Prints one
JSON line; exit 1 when a check fails."""
import argparse, csv, glob, json, os, sys

import numpy as np


def load(folder):
    rows = {}  # path -> output vector (None when skipped)
    order = []
    for index in sorted(glob.glob(os.path.join(folder, "*index-*.csv"))):
        outputs = np.load(index.replace("index-", "outputs-").replace(".csv", ".npy"))
        with open(index, newline="") as f:
            for r in csv.DictReader(f):
                order.append(r["path"])
                rows.setdefault(r["path"], []).append(outputs[int(r["row"])] if r["row"] else None)
    return order, rows


p = argparse.ArgumentParser(description=__doc__)
p.add_argument("reference")
p.add_argument("candidate")
p.add_argument("--inputs", type=int, required=True, help="number of input images")
p.add_argument("--tol", type=float, default=1e-3)
p.add_argument("--want-shrink", action="store_true")
a = p.parse_args()
problems = []
ref_order, ref = load(a.reference)
got_order, got = load(a.candidate)
for name, order, rows in (("reference", ref_order, ref), ("candidate", got_order, got)):
    if len(order) != a.inputs:
        problems.append(f"{name}: {len(order)} rows listed for {a.inputs} inputs")
    dup = [k for k, v in rows.items() if len(v) != 1]
    if dup:
        problems.append(f"{name}: {len(dup)} paths listed more than once, e.g. {dup[0]}")
if ref_order != got_order:
    problems.append("the two runs list the inputs in different orders")
worst, compared = 0.0, 0
for path, (r,) in ((k, v[:1]) for k, v in ref.items()):
    g = got.get(path, [None])[0]
    if (r is None) != (g is None):
        problems.append(f"{path}: written in one run only")
        continue
    if r is not None:
        worst = max(worst, float(np.max(np.abs(r - g))) / max(1.0, float(np.max(np.abs(r)))))
        compared += 1
if worst > a.tol:
    problems.append(f"outputs differ by {worst:.3g} (relative to the largest value) > {a.tol}")
report = json.load(open(os.path.join(a.candidate, "report.json")))
gov = (report.get("model") or {}).get("governor") or {}
if a.want_shrink and not gov.get("shrinks"):
    problems.append("no governor shrink in the candidate's report (the hog did not press)")
print(json.dumps({"ok": not problems, "problems": problems, "compared": compared, "worst_rel_diff": worst,
                  "governor": {k: gov.get(k) for k in ("shrinks", "grows", "downcasts", "images_retried")},
                  "events": [(e["kind"], e["batch_before"], e["batch_after"], e["reason"]) for e in gov.get("events", [])]}))
sys.exit(1 if problems else 0)
