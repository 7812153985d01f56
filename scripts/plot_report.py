#!/usr/bin/env python3
"""Draws an imgpipe run over time from its report.json, as a PNG:

    scripts/plot_report.py out/sample/report.json -o run.png

Panels (shared time axis): images done; batch size, with fp16 stretches shaded; the
governor's memory budget, the bytes the current batch needs and the device's free memory.
The governor's events (plan, shrink, downcast, grow, upcast, stop) are marked on every
panel. Without a model only the first panel is drawn. Needs matplotlib (pip install
matplotlib). Prints one line naming what it drew; exit code 1 when the report cannot be
drawn (no timeline: written by an imgpipe older than the timeline).
"""
import argparse
import collections
import json
import sys

EVENT_COLORS = {"plan": "#555555", "shrink": "#e67e22", "downcast": "#c0392b", "grow": "#27ae60",
                "upcast": "#2980b9", "stop": "#000000"}
FP16_SHADE = "#f5b7b1"


def byte_unit(largest):
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if largest >= size:
            return unit, size
    return "bytes", 1


def format_bytes(value, _pos=None):
    unit, size = byte_unit(value)
    return f"{value / size:g} {unit}"


def steps(times, values):
    """A step line: sample i holds for the batch that ran from sample i-1 (or the start) until it."""
    xs, ys = [], []
    for t0, t1, v in zip([0] + times, times, values):
        xs += [t0, t1]
        ys += [v, v]
    return xs, ys


def mark_events(ax, events, label_them, span):
    level, last = 0, None
    for e in events:
        color = EVENT_COLORS.get(e["kind"], "#888888")
        ax.axvline(e["time_s"], color=color, linestyle="--", linewidth=1, alpha=0.8)
        if not label_them:
            continue
        # Events close together get their labels at different heights, so they stay readable.
        level = (level + 1) % 4 if last is not None and e["time_s"] - last < 0.12 * span else 0
        last = e["time_s"]
        text = f'{e["kind"]} {e["batch_before"]}\u2192{e["batch_after"]}'
        if e["precision_after"] != e["precision_before"]:
            text += f' {e["precision_before"]}\u2192{e["precision_after"]}'
        ax.annotate(text, xy=(e["time_s"], 1 - level * 0.12), xycoords=("data", "axes fraction"), xytext=(3, -3),
                    textcoords="offset points", va="top", ha="left", fontsize=8, color=color,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})


def plot(report, out_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import FixedLocator, FuncFormatter

    tl = report.get("timeline")
    if tl is None:
        raise ValueError("the report has no 'timeline' (it was written by an older imgpipe): rerun to get one")
    model = report.get("model") or {}
    events = (model.get("governor") or {}).get("events", [])
    times, images = tl["time_s"], tl["images"]
    has_memory = "budget_bytes" in tl
    end = max([report["timing_s"]["wall"]] + times + [e["time_s"] for e in events])

    panels = 3 if has_memory else 1
    fig, axes = plt.subplots(panels, 1, sharex=True, figsize=(10, 2.6 * panels + 0.9), squeeze=False)
    axes = axes[:, 0]
    counts = report["counts"]
    where = f'model {model["path"]} on {model["backend"]}' if model else f'tensors only on {report["device"]}'
    fig.suptitle(f'imgpipe run: {counts["written"]} images written, {counts["skipped"]} skipped, in {report["timing_s"]["wall"]:.2f} s '
                 f'({report["images_per_s"]:.1f} images/s)\n{where}', fontsize=10)

    ax = axes[0]
    ax.plot([0] + times, [0] + images, color="#1f4e79", marker="." if len(times) < 60 else None)
    ax.set_ylabel("images done")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    if not times:
        ax.text(0.5, 0.5, "no batch ran", transform=ax.transAxes, ha="center")

    if has_memory:
        ax = axes[1]
        xs, ys = steps(times, tl["batch"])
        ax.plot(xs, ys, color="#1f4e79", label="batch size")
        for t0, t1, p in zip([0] + times, times, tl["precision"]):
            if p == "fp16":
                ax.axvspan(t0, t1, color=FP16_SHADE, alpha=0.6, linewidth=0)
        ax.set_ylabel("batch size (images)")
        ax.set_ylim(0, max(tl["batch"] + [1]) * 1.25)
        ax.grid(alpha=0.3)
        ax.legend(handles=[Line2D([], [], color="#1f4e79", label="batch size"),
                           Patch(color=FP16_SHADE, label="precision fp16 (unshaded: fp32)")],
                  loc="lower right", fontsize=8)

        ax = axes[2]
        series = [("budget", "budget_bytes", "#8e44ad"), ("needed by the batch", "needed_bytes", "#e67e22"),
                  ("free on the device", "free_bytes", "#2c3e50")]
        values = [v for _, k, _ in series for v in tl[k] if v > 0] or [1]
        log = max(values) / min(values) > 50  # free memory dwarfs a small budget: log scale shows both
        unit, size = ("bytes", 1) if log else byte_unit(max(values))
        for label, key, color in series:
            xs, ys = steps(times, [v / size for v in tl[key]])
            ax.plot(xs, ys, label=label, color=color, linewidth=2.5 if key == "budget_bytes" else 1.5,
                    linestyle=":" if key == "free_bytes" else "-")
        if log:
            ax.set_yscale("log")
            ticks = [2**(10 * k + j) for k in range(5) for j in (0, 5) if min(values) / 4 <= 2**(10 * k + j) <= max(values) * 2]
            ax.yaxis.set_major_locator(FixedLocator(ticks))
            ax.yaxis.set_major_formatter(FuncFormatter(format_bytes))
            ax.yaxis.set_minor_locator(FixedLocator([]))
            unit = "log scale"
        ax.set_ylabel(f"memory ({unit})")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)

    for i, ax in enumerate(axes):
        mark_events(ax, events, label_them=i == 0, span=end)
    kinds = collections.Counter(e["kind"] for e in events)
    if kinds:
        axes[0].legend(handles=[Line2D([], [], color=EVENT_COLORS.get(k, "#888888"), linestyle="--", label=f"{k} ({n})")
                                for k, n in kinds.items()], title="governor events", loc="lower right", fontsize=8,
                       title_fontsize=8)
    axes[-1].set_xlabel("time since start (s)")
    axes[-1].set_xlim(0, end * 1.02 if end > 0 else 1)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return panels, len(times), kinds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", help="report.json of an imgpipe run")
    parser.add_argument("-o", "--output", default="run.png", help="the PNG to write (default run.png)")
    args = parser.parse_args()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        sys.exit("plot_report: needs matplotlib (pip install matplotlib)")
    with open(args.report) as f:
        report = json.load(f)
    try:
        panels, samples, kinds = plot(report, args.output)
    except (ValueError, KeyError) as e:
        sys.exit(f"plot_report: cannot draw {args.report}: {e}")
    drawn = ", ".join(f"{k} {n}" for k, n in kinds.items()) or "none"
    print(f"plot_report: wrote {args.output} ({panels} panel{'s' if panels > 1 else ''}, {samples} timeline samples); events drawn: {drawn}")


if __name__ == "__main__":
    main()
