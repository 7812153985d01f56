#!/usr/bin/env python3
"""The decode wall: how many of a folder's JPEGs per second TurboJPEG alone decodes (the system's
libturbojpeg, the one imgpipe links) on every core, files already in memory, nothing else done;
at full size and at DCT scale 1/2. No pipeline that decodes every JPEG can beat it.

    decode_wall.py --images DIR [--processes N] [--repeat 3]

Prints one JSON line: {"full": images/s, "half": images/s, ...} (the best of --repeat).
Standard library only (ctypes)."""
import argparse, ctypes, ctypes.util, glob, json, os, time
from multiprocessing import Pool

TJPF_BGR = 1


def decode_all(job):
    paths, denom = job
    tj = ctypes.CDLL(ctypes.util.find_library("turbojpeg") or "libturbojpeg.so.0")
    tj.tjInitDecompress.restype = ctypes.c_void_p
    h = ctypes.c_void_p(tj.tjInitDecompress())
    blobs = [open(p, "rb").read() for p in paths]
    w, ht, sub, cs = (ctypes.c_int() for _ in range(4))
    out = ctypes.create_string_buffer(1)
    t = time.perf_counter()
    for b in blobs:
        tj.tjDecompressHeader3(h, b, ctypes.c_ulong(len(b)), ctypes.byref(w), ctypes.byref(ht), ctypes.byref(sub),
                               ctypes.byref(cs))
        sw, sh = (w.value + denom - 1) // denom, (ht.value + denom - 1) // denom
        if len(out) < sw * sh * 3:
            out = ctypes.create_string_buffer(sw * sh * 3)
        if tj.tjDecompress2(h, b, ctypes.c_ulong(len(b)), out, sw, sw * 3, sh, TJPF_BGR, 0) != 0:
            raise SystemExit(f"decode_wall: TurboJPEG failed on a file of {len(b)} bytes")
    dt = time.perf_counter() - t
    tj.tjDestroy(h)
    return dt


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", required=True)
    p.add_argument("--processes", type=int, default=os.cpu_count())
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    files = sorted(glob.glob(os.path.join(a.images, "*.jpg")))
    shares = [files[i::a.processes] for i in range(a.processes)]
    res = {"images": len(files), "processes": a.processes}
    with Pool(a.processes) as pool:
        for name, denom in (("full", 1), ("half", 2)):
            # The processes run side by side; the slowest one's time is the wall.
            res[name] = round(max(len(files) / max(pool.map(decode_all, [(s, denom) for s in shares]))
                                  for _ in range(a.repeat)), 1)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
