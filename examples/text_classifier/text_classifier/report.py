"""Compare runs: python -m PKG.report RUN [RUN ...] [-o DIR] draws their curves
overlaid and writes report.md, one row per run. Reads only the run folders, so it
works on a run still in progress.
"""

import json
import sys
import tomllib
from pathlib import Path

from text_classifier.config import Parser, out_folder

# One plot per entry: its (split, metric) curves, one color per run; metrics a project
# does not log are left out.
PLOTS = {
    "loss": (("train", "loss"), ("val", "loss")),
    "lr": (("train", "lr"),),
    "accuracy": (("val", "accuracy"),),
    "throughput": (("train", "samples_per_s"),),
}


def read_run(folder: Path) -> dict:
    """A run's events, config and status; a damaged line (a crash mid-write) is
    skipped with a note, a folder without metrics.jsonl is refused.
    """
    path = folder / "metrics.jsonl"
    if not path.is_file():
        msg = "error: {} is not a run: no metrics.jsonl"
        print(msg.format(folder), file=sys.stderr)
        sys.exit(2)
    events = []
    # bytes per line: a line that is not UTF-8 is damaged like one that is not JSON, and
    # the others still count
    for number, line in enumerate(path.read_bytes().splitlines(), 1):
        try:
            event = json.loads(line.decode("utf-8"))
            events.append({"split": event["split"], "step": event["step"], **event})
        except (ValueError, KeyError, TypeError):
            msg = "note: {}:{} is damaged; skipped"
            print(msg.format(path, number), file=sys.stderr)
    config, status = {}, "running"
    # a damaged config.toml or summary.json leaves the columns they fill empty
    try:
        if (folder / "config.toml").is_file():
            config = tomllib.loads((folder / "config.toml").read_text(encoding="utf-8"))
        if (folder / "summary.json").is_file():
            summary = (folder / "summary.json").read_text(encoding="utf-8")
            status = str(json.loads(summary)["status"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return {"folder": folder, "events": events, "config": config, "status": status}


def series(run: dict, split: str, key: str) -> tuple[list, list]:
    events = [e for e in run["events"] if e["split"] == split and key in e]
    return [e["step"] for e in events], [e[key] for e in events]


def plot(runs: list[dict], out: Path) -> list[str]:
    """Draw each plot to a PNG file; matplotlib is imported here only, as it is an
    optional dependency.
    """
    try:
        import matplotlib
    except ImportError:
        need = (
            "error: the report draws with matplotlib: pip install matplotlib (or pip "
            "install -e '.[plots]')"
        )
        print(need, file=sys.stderr)
        sys.exit(1)
    matplotlib.use("Agg")  # no window: files only
    import matplotlib.pyplot as plt

    drawn = []
    for name, lines in PLOTS.items():
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for i, run in enumerate(runs):
            for split, key in lines:
                steps, values = series(run, split, key)
                if steps:
                    style = "o--" if split == "val" else "-"
                    label = run["label"] + (f" {split}" if len(lines) > 1 else "")
                    ax.plot(steps, values, style, color=f"C{i % 10}", label=label)
        if ax.lines:
            values = [v for line in ax.lines for v in line.get_ydata()]
            # a loss falling by more than 10x reads better on a log scale
            if name == "loss" and 0 < min(values) and 10 * min(values) < max(values):
                ax.set_yscale("log")
            ax.set(xlabel="step", ylabel=name, title=name)
            ax.legend(fontsize="small")
            fig.savefig(out / f"{name}.png", dpi=100, bbox_inches="tight")
            drawn.append(name)
        plt.close(fig)
    return drawn


def table(runs: list[dict]) -> list[str]:
    """One Markdown row per run: the settings that differ between the runs, then the
    best and last validation metrics with their steps.
    """
    names = sorted({k for run in runs for k in run["config"]} - {"out_dir"})
    # A setting all runs share says nothing about why their curves differ.
    differ = [
        k for k in names if len({json.dumps(r["config"].get(k)) for r in runs}) > 1
    ]
    metrics = ["loss", "accuracy"]
    header = ["run", "status", "steps", *differ, "best val", "last val"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in runs:
        val = [e for e in run["events"] if e["split"] == "val"]
        steps = max((e["step"] for e in run["events"]), default=0)
        cells = [run["label"], run["status"], str(steps)]
        cells += [str(run["config"].get(k, "")) for k in differ]
        best = min(val, key=lambda e: e["loss"], default=None)
        for e in (best, val[-1] if val else None):
            shown = ", ".join(f"{m} {e[m]:.4g}" for m in metrics if m in e) if e else ""
            cells.append(f"{shown} (step {e['step']})" if e else "")
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = Parser(description="Compare runs: plots and report.md.")
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (out_dir)")
    parser.add_argument("-o", "--out", type=out_folder, default=Path("runs/report"))
    args = parser.parse_args(argv)
    runs = [read_run(folder) for folder in args.runs]
    # Label runs by folder name, or by path when two names collide.
    labels = [run["folder"].name for run in runs]
    unique = len(set(labels)) == len(labels)
    for run in runs:
        run["label"] = run["folder"].name if unique else str(run["folder"])
    args.out.mkdir(parents=True, exist_ok=True)
    drawn = plot(runs, args.out)
    lines = ["# Runs", "", *table(runs), ""]
    lines += [f"![{name}]({name}.png)" for name in drawn]
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    wrote = "wrote {} and {} plots"
    print(wrote.format(args.out / "report.md", len(drawn)))


if __name__ == "__main__":
    main()
