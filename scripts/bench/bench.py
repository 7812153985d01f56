#!/usr/bin/env python3
"""imgpipe and its peer (torchvision, scripts/bench/peer_torch.py) on the same images, in the
same run, back to back, so that the ratio holds even on a noisy machine.

  scripts/bench/bench.py --workload w2 [--small] [--repeat 3] [--device cpu|cuda]
                         [--peer auto|skip] [--json out.json] [--record] [--callgrind]

Workloads (configs/bench_*.yaml): w2 preprocess to float16 tensors; w1 w2 + ResNet-50 top-5;
w3 w1 under memory pressure (governor fault injection). --small: 200 images, ResNet-18.
W2 runs in both modes, all four alternating: imgpipe exact (decode.jpeg_downscale false) against
the exact peer, recorded as w2-exact; imgpipe fast (true) against the draft peer (PIL's
Image.draft, peer_torch.py --draft) and the exact peer, recorded as w2-fast; with the decode wall
(scripts/bench/decode_wall.py: TurboJPEG alone on every core, full size and DCT 1/2).
The images (and the ONNX model) are made once into bench-data/ with /usr/bin/python3
(numpy + OpenCV; torch + torchvision for the model and the peer). Each tool gets one untimed
warm-up run, then --repeat timed runs alternate imgpipe/peer, each a fresh process.
--record appends the JSON to docs/bench/results.jsonl; scripts/bench/render.py turns that
file into docs/BENCHMARKS.md. Standard library only."""
import argparse, datetime, json, os, platform, shutil, socket, statistics, subprocess, sys, threading, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
WORKLOADS = {  # name: (config, peer mode, needs a model)
    "w1": ("configs/bench_w1_classify.yaml", "classify", True),
    "w2": ("configs/bench_w2_preprocess.yaml", "preprocess", False),
    "w3": ("configs/bench_w3_pressure.yaml", "classify", True),
}
# W3's pressure: an allocation failure in batch 3, then the budget cut to 40% of the start
# plan from batch 6 until batch 14, when it is lifted (the governor should grow back).
W3_FAULTS = "fail_batch=3;budget_at=6:{cut},14:none"
FULL, SMALL = 2000, 200
WIDTH, HEIGHT, QUALITY = 640, 480, 90
MiB = 1 << 20


def say(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- data and model
def image_dir(data, n):
    return data / f"jpeg{WIDTH}x{HEIGHT}q{QUALITY}-{n}"


def make_images(py, data, n):
    d = image_dir(data, n)
    if d.is_dir() and len(list(d.glob("*.jpg"))) == n:
        return d
    probe = subprocess.run([py, "-c", "import numpy, cv2"], capture_output=True, text=True)
    if probe.returncode != 0:
        sys.exit(f"bench: cannot make the images: {py} lacks numpy and/or OpenCV (cv2) "
                 f"(Debian: apt-get install python3-numpy python3-opencv):\n{probe.stderr.strip()}")
    say(f"making {n} JPEGs {WIDTH}x{HEIGHT} q{QUALITY} in {d} ...")
    shutil.rmtree(d, ignore_errors=True)
    subprocess.run([py, str(HERE / "make_images.py"), "--out", str(d), "--n", str(n),
                    "--size", f"{WIDTH}x{HEIGHT}", "--quality", str(QUALITY)], check=True)
    return d


EXPORT = """
import inspect, sys, torch, torchvision
torch.manual_seed(0)
m = getattr(torchvision.models, sys.argv[1])().eval()
# The TorchScript exporter: newer PyTorch defaults to the dynamo one, which needs onnxscript.
legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
torch.onnx.export(m, torch.randn(1, 3, 224, 224), sys.argv[2], opset_version=17,
                  input_names=["input"], output_names=["logits"],
                  dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, **legacy)
"""


def make_model(py, data, arch):
    path = data / f"{arch}.onnx"
    if not path.exists():
        say(f"exporting {arch} (random weights, seed 0, opset 17) to {path} ...")
        tmp = path.with_suffix(".onnx.partial")
        r = subprocess.run([py, "-c", EXPORT, arch, str(tmp)], capture_output=True, text=True)
        if r.returncode != 0:
            return None, f"model export failed ({py} needs torch + torchvision): {last_line(r.stderr)}"
        tmp.rename(path)
    return path, ""


# ---------------------------------------------------------------- running one process
def last_line(text, prefer="error"):
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    hits = [l for l in lines if prefer in l.lower()]
    return (hits or lines or ["(no output)"])[-1]


def tree_pss_kib(pid):
    """Proportional set size of pid and all its descendants (DataLoader workers), in KiB."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                total += next(int(l.split()[1]) for l in f if l.startswith("Pss:"))
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (OSError, StopIteration, ValueError):
            pass
    return total


def run_process(argv, logdir, tag, env=None):
    """Runs argv as a fresh process; returns wall seconds, its own peak RSS (wait4), CPU seconds,
    the peak PSS of its process tree (sampled every 0.2 s), exit code, stdout, stderr."""
    out, err = logdir / f"{tag}.out", logdir / f"{tag}.err"
    with open(out, "w") as fo, open(err, "w") as fe:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdout=fo, stderr=fe, cwd=ROOT, env=env)
        peak, done = [0], threading.Event()

        def sample():
            while not done.wait(0.2):
                peak[0] = max(peak[0], tree_pss_kib(p.pid))
        th = threading.Thread(target=sample, daemon=True)
        th.start()
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        done.set(); th.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    return {"rc": p.returncode, "wall_s": wall, "peak_rss_mib": ru.ru_maxrss / 1024,
            "tree_peak_pss_mib": peak[0] / 1024 or None, "cpu_s": ru.ru_utime + ru.ru_stime,
            "stdout": out.read_text(), "stderr": err.read_text()}


def find_peak_gpu(report):
    """imgpipe's peak device memory in MiB, if its report has one (key names not fixed yet)."""
    for k, v in (report.get("memory") or {}).items():
        if ("device" in k or "gpu" in k) and "peak" in k and isinstance(v, (int, float)):
            return v / MiB if k.endswith("bytes") else v
    return None


def imgpipe_run(args, cfg, overrides, outdir, logdir, tag, n, faults=None):
    shutil.rmtree(outdir, ignore_errors=True)
    argv = [str(args.imgpipe), "--config", cfg, "--device", args.device, "--quiet"]
    for o in overrides + [f"output.dir={outdir}", "output.mode=overwrite", "progress=off"]:
        argv += ["--set", o]
    env = dict(os.environ, IMGPIPE_FAULT_INJECT=faults) if faults else None
    r = run_process(argv, logdir, tag, env)
    if faults:
        r["fault_inject"] = faults
    r["argv"] = argv
    if r["rc"] != 0:
        return r, f"imgpipe exit {r['rc']}: {last_line(r['stderr'])}"
    try:
        rep = json.loads((outdir / "report.json").read_text())
    except (OSError, ValueError) as e:
        return r, f"no readable report.json: {e}"
    images = rep.get("counts", {}).get("read", n)
    r.update(images=images, images_per_s=images / r["wall_s"], images_per_s_report=rep.get("images_per_s"),
             peak_rss_mib_report=rep.get("memory", {}).get("peak_rss_bytes", 0) / MiB,
             peak_gpu_mib=find_peak_gpu(rep), timing_s=rep.get("timing_s"),
             decode_threads=rep.get("decode_threads"), device=rep.get("device"))
    model = rep.get("model") or {}
    if model:
        gov = model.get("governor", {})
        r.update(precision=model.get("precision"), batch_size=model.get("batch_size"),
                 inference_ms_per_image=model.get("inference_ms_per_image"),
                 governor={k: gov.get(k) for k in ("shrinks", "grows", "downcasts", "images_retried")},
                 governor_timeline=[(e["kind"], e["batch_after"], e["precision_after"]) for e in gov.get("events", [])])
    if rep.get("counts", {}).get("written", 0) + rep.get("counts", {}).get("skipped", 0) != n:
        return r, f"imgpipe processed {images} of {n} images"
    return r, ""


def peer_run(args, mode, images, logdir, tag, n, extra=()):
    argv = [args.python, str(args.peer_script), "--images", str(images), "--mode", mode,
            "--device", args.device, "--workers", str(args.workers), *extra]
    r = run_process(argv, logdir, tag)
    r["argv"] = argv
    if r["rc"] != 0:
        return r, f"peer exit {r['rc']}: {last_line(r['stderr'])}"
    try:
        rep = json.loads(r["stdout"].strip().splitlines()[-1])
    except (IndexError, ValueError):
        return r, "peer printed no JSON line"
    r.update(images=rep["images"], images_per_s=rep["images"] / r["wall_s"],
             images_per_s_report=rep["images_per_s"], peak_rss_mib_report=rep["peak_rss_mib"],
             peak_gpu_mib=rep["peak_gpu_mib"] if args.device != "cpu" else None, peer=rep["peer"])
    if rep["images"] != n:
        return r, f"peer processed {rep['images']} of {n} images"
    return r, ""


# ---------------------------------------------------------------- summaries
METRICS = [  # key, label, higher is better
    ("images_per_s", "images/s, wall clock of the process (headline)", True),
    ("images_per_s_report", "images/s, as the tool reports it (excl. startup)", True),
    ("wall_s", "seconds, process start to exit", False),
    ("peak_rss_mib", "peak RSS MiB, main process (wait4)", False),
    ("tree_peak_pss_mib", "peak PSS MiB, process + children (sampled)", False),
    ("cpu_s", "CPU seconds (user + system)", False),
    ("peak_gpu_mib", "peak GPU MiB", False),
]


def summarize(runs):
    s = {}
    for key, _, _ in METRICS:
        v = [r[key] for r in runs if r.get(key) is not None]
        if v:
            s[key] = {"median": statistics.median(v), "min": min(v), "max": max(v)}
    return s


def ratios(a, b):
    """imgpipe / peer of the medians. images_per_s: imgpipe's wall-clock rate against both of
    the peer's (its wall clock, and its self-reported rate, which leaves out its startup)."""
    out = {}
    for key, _, _ in METRICS:
        if key in a and key in b and b[key]["median"]:
            out[key] = a[key]["median"] / b[key]["median"]
    if "images_per_s" in a and "images_per_s_report" in b:
        out["images_per_s_vs_peer_reported"] = a["images_per_s"]["median"] / b["images_per_s_report"]["median"]
    return out


def limits(runs, cores):
    """What limits imgpipe's figure, inferred (not measured) from report.json's stage times."""
    t = [r for r in runs if r.get("timing_s")]
    if not t:
        return ""
    med = lambda k: statistics.median(r["timing_s"].get(k, 0) or 0 for r in t)
    wall, dec, pre, wr = med("wall"), med("decode_thread_total"), med("preprocess_thread_total"), med("write")
    inf = med("inference") if "inference" in t[0]["timing_s"] else 0
    threads = t[0].get("decode_threads") or 1
    cpu = statistics.median(r["cpu_s"] for r in t) / statistics.median(r["wall_s"] for r in t)
    busy = (dec + pre) / threads / wall if wall else 0
    parts = {"decode": dec, "preprocess (resample/normalise)": pre, "write": wr, "model": inf}
    top = max(parts, key=parts.get)
    if inf and inf > 0.5 * wall:
        verdict = "model-bound"
    elif wr > 0.6 * wall:
        verdict = "copy/write-bound (the writer thread is busy most of the wall time)"
    elif busy > 0.8:
        verdict = ("decode-bound" if dec >= pre else "preprocess-bound") + \
            f" (the {threads} decode threads are busy {busy:.0%} of the wall time)"
    else:
        verdict = f"not stage-bound: decode threads busy only {busy:.0%} of the wall time (startup, I/O or queue waits)"
    if cpu > 0.85 * cores:
        verdict += f"; the machine's {cores} cores are saturated ({cpu:.2f} cores used on average)"
    elif os.getloadavg()[0] > 0.75 * cores:
        verdict += (f"; imgpipe used {cpu:.2f} of {cores} cores while other processes kept the load average "
                    f"at {os.getloadavg()[0]:.1f}, so its threads also waited for a core")
    share = ", ".join(f"{k} {v:.2f}s" for k, v in parts.items() if v)
    return (f"inferred: {verdict}. Stage times summed over threads (median): {share}; wall {wall:.2f}s; "
            f"largest: {top}.")


def fmt(s, key):
    if key not in s:
        return "-"
    m = s[key]
    return f"{m['median']:.1f} [{m['min']:.1f}..{m['max']:.1f}]"


def table(rec):
    a, b, q = rec["imgpipe"].get("summary", {}), rec["peer"].get("summary", {}), rec.get("ratios", {})
    rows = [("metric", "imgpipe median [min..max]", "peer median [min..max]", "imgpipe/peer")]
    for key, label, _ in METRICS:
        if key in a or key in b:
            rows.append((label, fmt(a, key), fmt(b, key), f"{q[key]:.2f}x" if key in q else "-"))
    if "images_per_s_vs_peer_reported" in q:
        rows.append(("images/s, imgpipe wall clock vs peer self-reported", "", "",
                     f"{q['images_per_s_vs_peer_reported']:.2f}x"))
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip() for r in rows)


# ---------------------------------------------------------------- machine facts
def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
               platform.processor())
    ram = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")) / (1 << 20)
    gpu = None
    if shutil.which("nvidia-smi"):
        r = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                           capture_output=True, text=True)
        gpu = r.stdout.strip().splitlines()[0] if r.returncode == 0 and r.stdout.strip() else None
    cores = os.cpu_count()
    label = f"{cpu}, {cores} cores, {ram:.0f} GiB RAM, {gpu or 'no GPU'}"
    return {"label": label, "cpu": cpu, "cores": cores, "ram_gib": round(ram, 1), "gpu": gpu,
            "os": platform.platform(), "hostname": socket.gethostname(), "loadavg_at_start": os.getloadavg()}


def git(*a):
    r = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


# ---------------------------------------------------------------- one workload
# W2's two modes: name, imgpipe overrides, peer arguments. Other workloads run as configured.
W2_MODES = [("exact", ["decode.jpeg_downscale=false"], []), ("fast", ["decode.jpeg_downscale=true"], ["--draft"])]


def bench(args, wl, data, logdir, peer_ok, peer_why):
    """A list of records: one per mode (W2), else one."""
    cfg, mode, needs_model = WORKLOADS[wl]
    n = SMALL if args.small else FULL
    images = make_images(args.python, data, n)
    name = f"{wl}{'-small' if args.small else ''}"
    rec = {"schema": 1, "workload": name, "config": cfg, "images": {"dir": str(images.relative_to(ROOT)) if
           images.is_relative_to(ROOT) else str(images), "count": n, "size": f"{WIDTH}x{HEIGHT}", "jpeg_quality": QUALITY},
           "repeat": args.repeat, "device": args.device,
           "imgpipe": {"available": True}, "peer": {"available": peer_ok, "reason": peer_why}}
    overrides = [f"input.path={images}"]
    if needs_model:
        arch = "resnet18" if args.small else "resnet50"
        model, why = make_model(args.python, data, arch)
        rec["model"] = arch
        rec["peer"]["model"] = "resnet50"  # peer_torch.py always runs ResNet-50
        if model is None:
            rec["imgpipe"].update(available=False, reason=why)
        else:
            overrides.append(f"model.path={model}")
    outdir = data / f"out-{name}"
    say(f"{name}: {n} images, imgpipe warm-up ...")
    faults = None
    if rec["imgpipe"]["available"]:
        r, why = imgpipe_run(args, cfg, overrides, outdir, logdir, f"{name}-imgpipe-warmup", n)
        if wl == "w3" and not why:  # size the budget cut from the plan the warm-up chose
            plan = next((e for e in json.loads((outdir / "report.json").read_text())["model"]["governor"]["events"]
                         if e["kind"] == "plan"), None)
            faults = W3_FAULTS.format(cut=int(plan["needed_bytes"] * 0.4)) if plan else None
            rec["fault_inject"] = faults
        if not why and needs_model and not any(outdir.glob("*predictions-*")):
            why = "imgpipe accepted model.path but wrote no predictions (ONNX inference not wired in yet)"
        if why:
            rec["imgpipe"].update(available=False, reason=why)
    if not rec["imgpipe"]["available"]:
        say(f"{name}: not available: {rec['imgpipe']['reason']}")
        rec["peer"].update(available=False, reason="not run: imgpipe is not available for this workload")
        return [rec]
    if peer_ok:
        say(f"{name}: peer warm-up ...")
        r, why = peer_run(args, mode, images, logdir, f"{name}-peer-warmup", n)
        if why:
            rec["peer"].update(available=False, reason=why)
            say(f"{name}: peer skipped: {why}")
    modes = W2_MODES if wl == "w2" else [("", [], [])]
    if rec["peer"]["available"] and wl == "w2":
        say(f"{name}: draft peer warm-up ...")
        r, why = peer_run(args, mode, images, logdir, f"{name}-peer-draft-warmup", n, ["--draft"])
        if why:
            sys.exit(f"bench: {name}: draft peer: {why} (log in {logdir})")
    # Every (mode, tool) pair in turn, each timed run: imgpipe, peer, imgpipe fast, draft peer, ...
    runs = {(m, tool): [] for m, _, _ in modes for tool in ("imgpipe", "peer")}
    for i in range(args.repeat):
        for m, over, peer_args in modes:
            say(f"{name}: timed run {i + 1}/{args.repeat}: imgpipe {m} ...")
            r, why = imgpipe_run(args, cfg, overrides + over, outdir, logdir, f"{name}{m}-imgpipe-{i}", n, faults)
            if why:
                sys.exit(f"bench: {name}: {why} (log in {logdir})")
            runs[(m, "imgpipe")].append(r)
            if rec["peer"]["available"]:
                say(f"{name}: timed run {i + 1}/{args.repeat}: peer {' '.join(peer_args)} ...")
                r, why = peer_run(args, mode, images, logdir, f"{name}{m}-peer-{i}", n, peer_args)
                if why:
                    sys.exit(f"bench: {name}: {why} (log in {logdir})")
                runs[(m, "peer")].append(r)
    shutil.rmtree(outdir, ignore_errors=True)
    for r in (r for rs in runs.values() for r in rs):
        r.pop("stdout"), r.pop("stderr")
    recs = []
    for m, _, _ in modes:
        one = json.loads(json.dumps(rec))
        if m:
            one["workload"] = f"{name}-{m}"
        for tool in ("imgpipe", "peer"):
            one[tool]["runs"] = runs[(m, tool)]
            one[tool]["summary"] = summarize(runs[(m, tool)])
            if runs[(m, tool)]:
                one[tool]["command"] = " ".join(runs[(m, tool)][0]["argv"])
        one["ratios"] = ratios(one["imgpipe"]["summary"], one["peer"].get("summary", {}))
        one["limits"] = limits(runs[(m, "imgpipe")], os.cpu_count())
        recs.append(one)
    if wl == "w2":
        exact, fast = recs
        fast["peer"]["name"] = "draft peer"
        fast["ratios_vs_exact_peer"] = ratios(fast["imgpipe"]["summary"], exact["peer"].get("summary", {}))
        say(f"{name}: decode wall ...")
        r = subprocess.run([sys.executable, str(HERE / "decode_wall.py"), "--images", str(images)],
                           capture_output=True, text=True)
        if r.returncode == 0:
            wall = json.loads(r.stdout)
            # W2's 640x480 JPEGs: exact decodes them at full size, fast at DCT 1/2 (240 >= the crop).
            for one, key in ((exact, "full"), (fast, "half")):
                one["decode_wall"] = {**wall, "this_mode": key,
                                      "fraction": one["imgpipe"]["summary"]["images_per_s"]["median"] / wall[key]}
    return recs


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", default="w2", help="w1, w2, w3 or a comma list (default w2)")
    p.add_argument("--small", action="store_true", help=f"{SMALL} images and ResNet-18 instead of {FULL} and ResNet-50")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per tool (default 3)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--peer", choices=["auto", "skip"], default="auto")
    p.add_argument("--workers", type=int, default=2, help="peer DataLoader workers (default 2)")
    p.add_argument("--json", type=Path, help="write the results here (a list when several workloads)")
    p.add_argument("--record", action="store_true", help="append each result to docs/bench/results.jsonl")
    p.add_argument("--callgrind", action="store_true", help="also run scripts/bench/callgrind.sh, record total Ir")
    p.add_argument("--data", type=Path, default=ROOT / "bench-data", help="image/model cache (default bench-data/)")
    p.add_argument("--imgpipe", type=Path, default=ROOT / "imgpipe")
    p.add_argument("--python", default="/usr/bin/python3", help="python for images, model export and peer")
    p.add_argument("--peer-script", type=Path, default=HERE / "peer_torch.py")
    p.add_argument("--prepare-only", action="store_true", help="make the image set and exit")
    p.add_argument("--export-only", metavar="ARCH", help="export a torchvision model (resnet50) into --data and exit")
    args = p.parse_args()
    data = args.data.resolve()
    data.mkdir(parents=True, exist_ok=True)
    if args.prepare_only:
        print(make_images(args.python, data, SMALL if args.small else FULL))
        return
    if args.export_only:
        path, why = make_model(args.python, data, args.export_only)
        print(path or sys.exit(f"bench: {why}"))
        return
    if not os.access(args.imgpipe, os.X_OK):
        sys.exit(f"bench: {args.imgpipe} not found: build it first (scripts/setup.sh)")
    peer_ok, peer_why = False, "skipped (--peer skip)"
    if args.peer == "auto":
        r = subprocess.run([args.python, "-c", "import torch, torchvision, PIL"], capture_output=True, text=True)
        peer_ok = r.returncode == 0
        peer_why = "" if peer_ok else f"skipped: {args.python} cannot import PyTorch: {last_line(r.stderr)}"
        if not peer_ok:
            say(f"peer {peer_why}; running imgpipe alone")
    logdir = data / "logs"
    logdir.mkdir(exist_ok=True)
    facts = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "command": " ".join(["scripts/bench/bench.py"] + sys.argv[1:]),
             "git": {"commit": git("rev-parse", "HEAD"), "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
                     "dirty": bool(git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs"))},
             "imgpipe_version": subprocess.run([str(args.imgpipe), "--version"], capture_output=True,
                                               text=True).stdout.strip(),
             "machine": machine()}
    callgrind = None
    if args.callgrind:
        say("callgrind ...")
        r = subprocess.run([str(HERE / "callgrind.sh")], cwd=ROOT, capture_output=True, text=True)
        irs = {l.split(":")[0]: int(l.split()[1]) for l in r.stdout.splitlines() if l.split(":")[0].endswith("_Ir")}
        callgrind = {**irs, "set": "first 20 images of the small set, decode.threads 1"} if "total_Ir" in irs \
            else {"error": last_line(r.stderr + r.stdout)}
    recs = []
    for wl in args.workload.split(","):
        if wl not in WORKLOADS:
            sys.exit(f"bench: unknown workload {wl!r}: one of {', '.join(WORKLOADS)}")
        for rec in bench(args, wl, data, logdir, peer_ok, peer_why):
            rec = {**facts, **rec}
            if callgrind:
                rec["callgrind"] = callgrind
            recs.append(rec)
            print(f"\n== {rec['workload']}: {rec['images']['count']} JPEGs {rec['images']['size']} "
                  f"q{QUALITY}, device {args.device}, {args.repeat} timed runs each; {facts['machine']['label']}")
            if not rec["imgpipe"]["available"]:
                print(f"not available: {rec['imgpipe']['reason']}")
                continue
            if not rec["peer"]["available"]:
                print(f"peer {rec['peer']['reason']}")
            print(table(rec))
            if rec.get("limits"):
                print(rec["limits"])
            if rec.get("ratios_vs_exact_peer"):
                print(f"fast mode against the exact peer: {rec['ratios_vs_exact_peer']['images_per_s']:.2f}x images/s")
            if rec.get("decode_wall"):
                w = rec["decode_wall"]
                print(f"decode wall ({w['this_mode']}): {w[w['this_mode']]:.0f} images/s; imgpipe at {w['fraction']:.0%} of it")
            if callgrind:
                print(f"callgrind: {callgrind}")
    if args.json:
        args.json.write_text(json.dumps(recs[0] if len(recs) == 1 else recs, indent=1) + "\n")
    if args.record:
        with open(ROOT / "docs/bench/results.jsonl", "a") as f:
            for rec in recs:
                f.write(json.dumps(rec, separators=(",", ":")) + "\n")
        say("appended to docs/bench/results.jsonl; regenerate the page with scripts/bench/render.py")


if __name__ == "__main__":
    main()
