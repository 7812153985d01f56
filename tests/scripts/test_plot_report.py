#!/usr/bin/env python3
"""scripts/plot_report.py on the reports of real imgpipe runs: one under a simulated memory
squeeze (shrink, downcast to fp16, grow back) and one without a model.

    test_plot_report.py IMGPIPE_BINARY SOURCE_DIR

Exit code 77 (a CTest skip) with the reason when matplotlib is not installed."""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

try:
    import matplotlib  # noqa: F401
except ImportError:
    print("SKIP: matplotlib is not installed for this python (scripts/test.sh installs it with pip)")
    sys.exit(77)

IMGPIPE, SOURCE = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
# From batch 2 the budget is cut below a batch of 8 (shrink to 1), batch 3 fails at batch 1
# (downcast to fp16), from batch 4 the cap is lifted (the batch grows back, 1 -> 2 -> 4 -> 8).
SQUEEZE = "budget_at=2:100KiB,4:none;fail_batch=3"


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


class PlotReport(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="imgpipe-plot-")
        images = os.path.join(cls.tmp, "in")
        os.makedirs(images)
        sample = os.path.join(SOURCE, "data", "sample")
        # 30 copies of the sample's 7 images (one of them corrupt: skipped each time).
        files = [os.path.join(d, f) for d, _, fs in os.walk(sample) for f in fs if not f.endswith((".onnx", ".txt"))]
        for i in range(30):
            for f in files:
                shutil.copy(f, os.path.join(images, f"{i:02d}-{os.path.basename(f)}"))
        cls.inputs = 30 * len(files)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def run_imgpipe(self, name, *sets, env=None):
        out = os.path.join(self.tmp, name)
        args = [IMGPIPE, "--config", os.path.join(SOURCE, "configs", "sample.yaml"), "--set", "progress=off",
                "--set", f"input.path={self.tmp}/in", "--set", f"output.dir={out}", "--set", "batch.max=8", "--set", "output.images_per_shard=64",
                "--set", f"model.path={SOURCE}/data/sample/model.onnx", "--set", f"model.labels={SOURCE}/data/sample/labels.txt"]
        for s in sets:
            args += ["--set", s]
        r = subprocess.run(args, capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=self.tmp)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(out, "report.json")) as f:
            return out, json.load(f)

    def plot(self, out):
        png = os.path.join(out, "run.png")
        r = subprocess.run([sys.executable, os.path.join(SOURCE, "scripts", "plot_report.py"),
                            os.path.join(out, "report.json"), "-o", png], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        width, height = png_size(png)
        self.assertGreaterEqual(width, 800)
        self.assertGreater(os.path.getsize(png), 20000)  # lines, labels and shading, not a blank canvas
        return r.stdout, height

    def test_squeezed_run_draws_every_governor_decision(self):
        out, report = self.run_imgpipe("squeezed", env={"IMGPIPE_FAULT_INJECT": SQUEEZE})
        tl = report["timeline"]
        written = report["counts"]["written"]
        self.assertEqual(written, self.inputs * 6 // 7)
        self.assertEqual(tl["images"][-1], written)  # every image the model ran is on the timeline
        self.assertEqual(sorted(set(tl["batch"])), [1, 2, 4, 8])
        self.assertEqual(tl["precision"][0], "fp32")
        self.assertEqual(tl["precision"][-1], "fp16")
        self.assertIn(102400, tl["budget_bytes"])  # the injected 100 KiB cap
        self.assertTrue(all(a <= b for a, b in zip(tl["time_s"], tl["time_s"][1:])))
        stdout, height = self.plot(out)
        self.assertIn("3 panels", stdout)
        self.assertIn(f'{len(tl["time_s"])} timeline samples', stdout)
        self.assertIn("events drawn: plan 1, shrink 1, downcast 1, grow 3", stdout)
        self.assertGreater(height, 600)

    def test_run_without_model_draws_images_over_time(self):
        out, report = self.run_imgpipe("tensors", "model.path=")
        tl = report["timeline"]
        self.assertEqual(tl["images"][-1], report["counts"]["written"])
        self.assertNotIn("budget_bytes", tl)
        stdout, _ = self.plot(out)
        self.assertIn("(1 panel,", stdout)
        self.assertIn("events drawn: none", stdout)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
