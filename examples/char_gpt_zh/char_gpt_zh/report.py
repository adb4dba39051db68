"""比较多次运行：python -m PKG.report RUN [RUN ...] [-o DIR]
把各次运行的曲线画在同一张图上，并写出 report.md，每次运行一行。它只读运行目录，
所以正在进行的运行也能用。
"""

import json
import sys
import tomllib
from pathlib import Path

from char_gpt_zh.config import Parser, out_folder

# 每项一张图：画出其中每个（数据划分，指标）的曲线，每次运行一种颜色；
# 项目没有记录的指标不画。
PLOTS = {
    "loss": (("train", "loss"), ("val", "loss")),
    "lr": (("train", "lr"),),
    "throughput": (("train", "samples_per_s"),),
}


def read_run(folder: Path) -> dict:
    """读取一次运行的事件、配置和状态；损坏的行（写到一半时崩溃）跳过并提示，没有
    metrics.jsonl 的目录直接拒绝。
    """
    path = folder / "metrics.jsonl"
    if not path.is_file():
        msg = "错误：{} 不是一次训练：没有 metrics.jsonl"
        print(msg.format(folder), file=sys.stderr)
        sys.exit(2)
    events = []
    # 按行读取字节：不是 UTF-8 的行和不是 JSON 的行一样算损坏，其他行照常统计
    for number, line in enumerate(path.read_bytes().splitlines(), 1):
        try:
            event = json.loads(line.decode("utf-8"))
            events.append({"split": event["split"], "step": event["step"], **event})
        except (ValueError, KeyError, TypeError):
            msg = "注意：{}:{} 已损坏，跳过"
            print(msg.format(path, number), file=sys.stderr)
    config, status = {}, "running"
    # config.toml 或 summary.json 损坏时，它们填写的列留空
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
    """把每张图画成 PNG 文件；matplotlib 是可选依赖，只在这里导入。"""
    try:
        import matplotlib
    except ImportError:
        need = (
            "错误：报告要用 matplotlib 画图：pip install matplotlib（或 pip install -e "
            "'.[plots]'）"
        )
        print(need, file=sys.stderr)
        sys.exit(1)
    matplotlib.use("Agg")  # 不开窗口，只写文件
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
            # 下降超过 10 倍的损失在对数坐标上更易读
            if name == "loss" and 0 < min(values) and 10 * min(values) < max(values):
                ax.set_yscale("log")
            ax.set(xlabel="step", ylabel=name, title=name)
            ax.legend(fontsize="small")
            fig.savefig(out / f"{name}.png", dpi=100, bbox_inches="tight")
            drawn.append(name)
        plt.close(fig)
    return drawn


def table(runs: list[dict]) -> list[str]:
    """每次运行一行 Markdown：先列出各次运行之间不同的设置，
    再列出最佳和最新的验证指标及其步数。
    """
    names = sorted({k for run in runs for k in run["config"]} - {"out_dir"})
    # 所有运行都相同的设置，解释不了曲线为什么不同。
    differ = [
        k for k in names if len({json.dumps(r["config"].get(k)) for r in runs}) > 1
    ]
    metrics = ["loss"]
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
    parser = Parser(description="比较多次训练：画图并写出 report.md。")
    parser.add_argument("runs", nargs="+", type=Path, help="训练文件夹（out_dir）")
    parser.add_argument("-o", "--out", type=out_folder, default=Path("runs/report"))
    args = parser.parse_args(argv)
    runs = [read_run(folder) for folder in args.runs]
    # 用目录名标注每次运行；两个目录同名时改用路径。
    labels = [run["folder"].name for run in runs]
    unique = len(set(labels)) == len(labels)
    for run in runs:
        run["label"] = run["folder"].name if unique else str(run["folder"])
    args.out.mkdir(parents=True, exist_ok=True)
    drawn = plot(runs, args.out)
    lines = ["# Runs", "", *table(runs), ""]
    lines += [f"![{name}]({name}.png)" for name in drawn]
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    wrote = "已写出 {} 和 {} 张图"
    print(wrote.format(args.out / "report.md", len(drawn)))


if __name__ == "__main__":
    main()
