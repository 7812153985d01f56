#!/usr/bin/env python3
"""Mutation check: applies each mutation of scripts/mutations.txt, one at a time, to a scratch
copy of the committed tree (never the working tree), rebuilds there incrementally (ccache),
runs the `cpu` tests and prints killed/survived and the score. Too slow for every CI run.

  scripts/mutation_check.py [--only NAME ...] [--timeout S] [--jobs N] [--scratch DIR] [--check]

--check only verifies that every `from:` snippet occurs exactly once. A survivor with a
`survivor:` reason in the list counts as justified. Exit 0 when every mutation is killed or
justified, 1 otherwise.
"""
import argparse
import os
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent


def load(path):
    muts, cur = [], {}
    for line in path.read_text().splitlines() + [""]:
        if line.startswith("#"):
            continue
        if not line.strip():
            if cur:
                muts.append(cur)
            cur = {}
            continue
        key, _, value = line.partition(": ")
        cur[key.rstrip(":")] = value
    for m in muts:
        missing = {"name", "file", "from", "to"} - m.keys()
        if missing:
            sys.exit(f"mutations: {m.get('name', m)} lacks {', '.join(sorted(missing))}")
    return muts


def check(muts, tree):
    bad = 0
    for m in muts:
        n = (tree / m["file"]).read_text().count(m["from"])
        if n != 1:
            print(f"{m['name']}: snippet found {n} times in {m['file']}")
            bad += 1
    return bad


def run(cmd, cwd, timeout=None):
    try:
        return subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        return 124


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--list", default=str(ROOT / "scripts/mutations.txt"))
    ap.add_argument("--only", nargs="*", help="names of the mutations to run")
    ap.add_argument("--timeout", type=int, default=300, help="seconds of cpu tests per mutant")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--scratch", help="scratch folder (default: a new one under /tmp)")
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    muts = load(pathlib.Path(a.list))
    if a.only:
        muts = [m for m in muts if m["name"] in a.only]
    if check(muts, ROOT):
        return 1
    if a.check:
        print(f"{len(muts)} mutations, every snippet found once")
        return 0

    tree = pathlib.Path(a.scratch or tempfile.mkdtemp(prefix="imgpipe-mutants-"))
    os.environ["CCACHE_BASEDIR"] = str(tree)  # cache hits across scratch folders
    tree.mkdir(parents=True, exist_ok=True)
    # The committed tree (HEAD), so uncommitted edits never leak into the verdicts.
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    build = tree / "build"
    env_args = os.environ.get("IMGPIPE_CMAKE_ARGS", "-DCMAKE_CUDA_ARCHITECTURES=75").split()
    cfg = ["cmake", "-S", str(tree), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release", *env_args]
    make = ["cmake", "--build", str(build), "-j", str(a.jobs)]
    test = ["ctest", "--test-dir", str(build), "-L", "cpu", "--stop-on-failure", "-j", str(a.jobs),
            "--timeout", str(a.timeout)]
    if run(cfg, tree) or run(make, tree) or run(test, tree, a.timeout * 4):
        sys.exit(f"the unmutated tree does not build or pass its cpu tests in {tree}")

    killed, justified, survived = [], [], []
    for m in muts:
        path = tree / m["file"]
        original = path.read_text()
        path.write_text(original.replace(m["from"], m["to"], 1))
        try:
            if run(make, tree):
                verdict = "killed (build)"
            elif run(test, tree, a.timeout * 4):
                verdict = "killed"
            else:
                verdict = "survived"
        finally:
            path.write_text(original)
        if verdict.startswith("killed"):
            killed.append(m["name"])
        elif m.get("survivor"):
            justified.append(m["name"])
            verdict += f" (justified: {m['survivor']})"
        else:
            survived.append(m["name"])
        print(f"{m['name']}: {verdict}", flush=True)
    run(make, tree)  # leave the scratch build matching the tree
    total = len(muts)
    print(f"score: {len(killed)}/{total} killed, {len(justified)} justified survivors, "
          f"{len(survived)} unexplained survivors{': ' + ', '.join(survived) if survived else ''}")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
