"""How long dlgen takes to write a project, beside cookiecutter and copier writing the same
project from a template of its files.

    pip install cookiecutter copier   # not dlgen dependencies; a tool that is missing is skipped
    python benchmarks/generation_speed.py [--model gpt] [--runs 20]

The cookiecutter and copier templates are made from the project dlgen renders: the same
files, with the project name as their one variable and everything else inside
{% raw %} blocks, so the three tools write the same tree (checked before timing). dlgen does
more per run (it composes the files from the option spec, fills in the comments and checks
the formatting); the others substitute one variable. Two timings per tool: in-process (the
engine alone) and the command line (what a user waits for, interpreter start included).
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scaffold.generate import generate, render
from scaffold.spec import build_spec

NAME = "bench_proj"


def templated(text: str) -> str:
    """text with NAME as the one template variable and all else literal."""
    parts = ["{% raw %}" + part + "{% endraw %}" for part in text.split(NAME)]
    return "{{ project_name }}".join(parts)


def make_templates(files: dict[str, str], root: Path) -> tuple[Path, Path]:
    cc, cp = root / "cookiecutter", root / "copier"
    (cc / "{{cookiecutter.project_name}}").mkdir(parents=True)
    (cc / "cookiecutter.json").write_text(json.dumps({"project_name": NAME}))
    cp.mkdir()
    (cp / "copier.yml").write_text(
        f"project_name:\n  type: str\n  default: {NAME}\n_templates_suffix: .jinja\n"
    )
    for rel, text in files.items():
        body = templated(text)
        path = (
            cc
            / "{{cookiecutter.project_name}}"
            / rel.replace(NAME, "{{cookiecutter.project_name}}")
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body.replace("{{ project_name }}", "{{ cookiecutter.project_name }}"))
        path = cp / (rel.replace(NAME, "{{ project_name }}") + ".jinja")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    return cc, cp


def tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): p.read_text()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".copier-answers")
    }


def median_ms(run, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="gpt")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--cli-runs", type=int, default=5)
    args = parser.parse_args()
    spec = build_spec(NAME, model=args.model)
    files = render(spec)
    tmp = Path(tempfile.mkdtemp())
    cc, cp = make_templates(files, tmp / "templates")
    out = tmp / "out"
    counter = iter(range(10**9))

    def fresh() -> Path:
        target = out / str(next(counter))
        target.mkdir(parents=True)
        return target

    tools = {"dlgen": (lambda: generate(spec, fresh() / NAME), ["dlgen", "new", "{dst}/" + NAME])}
    try:
        from cookiecutter.main import cookiecutter

        tools["cookiecutter"] = (
            lambda: cookiecutter(str(cc), no_input=True, output_dir=str(fresh())),
            ["cookiecutter", "--no-input", "-o", "{dst}", str(cc)],
        )
    except ImportError:
        print("cookiecutter is not installed: skipped")
    try:
        from copier import run_copy

        tools["copier"] = (
            lambda: run_copy(str(cp), str(fresh() / NAME), defaults=True, quiet=True),
            ["copier", "copy", "--defaults", "--quiet", str(cp), "{dst}/" + NAME],
        )
    except ImportError:
        print("copier is not installed: skipped")

    expected = dict(files)
    rows = []
    for tool, (run, command) in tools.items():
        run()  # warm-up, and the check that all three write the same project
        written = max(out.iterdir(), key=lambda p: int(p.name)) / NAME
        assert tree(written) == expected, f"{tool} wrote a different project"
        in_process = median_ms(run, args.runs)
        cli = []
        for _ in range(args.cli_runs):
            dst = fresh()
            start = time.perf_counter()
            argv = [a.replace("{dst}", str(dst)) for a in command]
            subprocess.run(argv, check=True, capture_output=True)
            cli.append(time.perf_counter() - start)
        rows.append((tool, in_process, statistics.median(cli) * 1000))
    shutil.rmtree(tmp)

    print(
        f"project: dlgen new {NAME} --model {args.model}: {len(files)} files, "
        f"{sum(len(t) for t in files.values()) // 1024} KiB"
    )
    print("| tool | in-process, median | command line, median |\n|---|---|---|")
    for tool, in_process, cli in rows:
        print(f"| {tool} | {in_process:.0f} ms | {cli:.0f} ms |")


if __name__ == "__main__":
    main()
