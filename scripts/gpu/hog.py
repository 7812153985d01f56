#!/usr/bin/env python3
"""A second GPU tenant for the first-light run (scripts/gpu/first_light.sh): creates its CUDA
context, touches --ready, waits for --go to exist, then takes all but --leave MiB of the free
GPU memory in one block (less if that fails), prints one JSON line, and holds the memory for
--hold seconds or until --stop exists."""
import argparse, json, os, sys, time

import torch

MiB = 1 << 20
p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--ready", required=True)
p.add_argument("--go", required=True)
p.add_argument("--stop", required=True)
p.add_argument("--leave", type=int, default=64, help="MiB left free (default 64)")
p.add_argument("--hold", type=float, default=60.0)
p.add_argument("--wait", type=float, default=120.0, help="seconds to wait for --go")
a = p.parse_args()

torch.empty(1, device="cuda")  # the context first: the grab itself is then quick
open(a.ready, "w").close()
deadline = time.time() + a.wait
while not os.path.exists(a.go):
    if time.time() > deadline:
        sys.exit("hog: no go signal")
    time.sleep(0.01)
free, total = torch.cuda.mem_get_info()
take, block = max(0, free - a.leave * MiB), None
while take > 0 and block is None:
    try:
        block = torch.empty(take, dtype=torch.uint8, device="cuda")
    except RuntimeError:  # someone allocated meanwhile: a little less
        take -= max(take // 50, 64 * MiB)
after, _ = torch.cuda.mem_get_info()
print(json.dumps({"t": time.time(), "took_bytes": max(take, 0), "free_before": free, "free_after": after,
                  "total": total}), flush=True)
end = time.time() + a.hold
while time.time() < end and not os.path.exists(a.stop):
    time.sleep(0.05)
