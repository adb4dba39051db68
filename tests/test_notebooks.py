"""Notebooks: `dlgen snippet --notebook`, `dlgen course` (exercises that fail until they
are written, solutions that pass), in English and Chinese."""

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import assert_ruff_clean
from test_snippets import code_shape, has_cjk
from typer.testing import CliRunner

from scaffold.cli import app
from scaffold.generate import course, snippet_notebook
from scaffold.spec import COURSE, SNIPPETS

NAMES = [s.name for s in SNIPPETS]


def source(cell: dict) -> str:
    return "".join(cell["source"])


def code_cells(text: str) -> list[str]:
    return [source(c) for c in json.loads(text)["cells"] if c["cell_type"] == "code"]


@pytest.fixture(scope="module")
def courses():
    return {lang: course(lang=lang) for lang in ("en", "zh")}


def test_course_layout_and_index(courses, tmp_path):
    for files in courses.values():
        stems = [f"{i:02d}-{name}.ipynb" for i, name in enumerate(COURSE, 1)]
        assert sorted(COURSE) == sorted(NAMES)
        for stem in stems:
            assert {stem, f"exercises/{stem}", f"solutions/{stem}"} <= set(files)
            assert f"({stem})" in files["README.md"]
    assert has_cjk(courses["zh"]["README.md"]) and not has_cjk(courses["en"]["README.md"])


def test_notebooks_are_black_and_ruff_clean(courses, tmp_path):
    import black

    for lang, files in courses.items():
        for rel, text in files.items():
            if rel.endswith(".ipynb"):
                for code in code_cells(text):
                    assert black.format_str(code, mode=black.Mode()) == code + "\n", rel
                out = tmp_path / lang / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(text)
    assert_ruff_clean(tmp_path)


def test_en_and_zh_run_the_same_code(courses):
    for rel, en in courses["en"].items():
        if rel.endswith(".ipynb"):
            zh = courses["zh"][rel]
            assert [code_shape(c) for c in code_cells(en)] == [
                code_shape(c) for c in code_cells(zh)
            ], rel
            prose = [source(c) for c in json.loads(zh)["cells"] if c["cell_type"] == "markdown"]
            assert all(has_cjk(p) for p in prose), rel


def test_each_exercise_has_a_check_and_leaves_something_to_write(courses):
    for rel, text in courses["en"].items():
        if rel.startswith("exercises/"):
            cells = json.loads(text)["cells"]
            checks = [c for c in cells if "check" in c["metadata"].get("tags", [])]
            assert checks, rel
            assert any("...  # your code" in source(c) for c in cells), rel
            assert text != courses["en"][rel.replace("exercises/", "solutions/")]


RUN_CELLS = r"""
import json, sys
nb = json.load(open(sys.argv[1]))
scope = {"__name__": "__main__"}
for cell in nb["cells"]:
    if cell["cell_type"] != "code":
        continue
    try:
        exec("".join(cell["source"]), scope)
    except AssertionError as e:
        check = "check" in cell["metadata"].get("tags", [])
        print("CHECK FAILED" if check else "ASSERT", e)
        sys.exit(3)
print("ALL PASSED")
"""


def run_cells(path) -> subprocess.CompletedProcess:
    """Every code cell, top to bottom, in one namespace: as Jupyter runs it, without a kernel."""
    return subprocess.run(
        [sys.executable, "-c", RUN_CELLS, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=path.parent,
    )


@pytest.mark.slow
def test_exercise_checks_fail_until_written_and_pass_on_the_solution(courses, tmp_path):
    files = courses["en"]
    paths = []
    for rel in files:
        if rel.startswith(("exercises/", "solutions/")):
            path = tmp_path / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(files[rel])
            paths.append(path)
    with ThreadPoolExecutor(2) as pool:
        results = dict(zip(paths, pool.map(run_cells, paths), strict=True))
    for path, result in results.items():
        if path.parent.name == "exercises":
            assert result.returncode == 3 and "CHECK FAILED" in result.stdout, path.name
        else:
            assert result.returncode == 0 and "ALL PASSED" in result.stdout, (
                path.name,
                result.stdout[-1500:],
                result.stderr[-1500:],
            )


@pytest.mark.slow
def test_solution_notebooks_execute_in_a_jupyter_kernel(courses, tmp_path):
    """Each solution notebook, both languages, in an ipykernel, top to bottom."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")

    def execute(item):
        lang, rel = item
        nb = nbformat.reads(courses[lang][rel], as_version=4)
        folder = tmp_path / lang
        folder.mkdir(exist_ok=True)
        client = nbclient.NotebookClient(
            nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": folder}}
        )
        client.execute()
        return nb

    items = [
        (lang, rel) for lang in courses for rel in courses[lang] if rel.startswith("solutions/")
    ]
    with ThreadPoolExecutor(2) as pool:
        for (lang, rel), nb in zip(items, pool.map(execute, items), strict=True):
            checks = [c for c in nb.cells if "check" in c.metadata.get("tags", [])]
            assert checks and all(c.outputs for c in checks), (lang, rel)  # one line each


def test_snippet_notebook_cli(tmp_path):
    out = tmp_path / "attention.ipynb"
    result = CliRunner().invoke(
        app, ["snippet", "attention", "--notebook", "--lang", "zh", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    nb = json.loads(out.read_text())
    kinds = [c["cell_type"] for c in nb["cells"]]
    assert kinds[0] == "markdown" and "code" in kinds
    assert not any("check" in c["metadata"].get("tags", []) for c in nb["cells"])
    assert snippet_notebook("attention", lang="zh") == out.read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["course", "{tmp}/c", "--sections", "tensors,atention"], "unknown section 'atention'"),
        (["snippet", "mlp", "--notebook", "-o", "{tmp}/mlp.py"], "FILE.ipynb"),
        (["course", "{tmp}/full"], "not empty"),
        (["course", "{tmp}/c", "--lang", "fr"], "fr"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, args, message):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = CliRunner().invoke(app, [a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_course_sections_and_force(tmp_path):
    target = tmp_path / "kurs"
    result = CliRunner().invoke(app, ["course", str(target), "--sections", "amp,tensors"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in target.glob("*.ipynb")) == ["01-tensors.ipynb", "08-amp.ipynb"]
    again = CliRunner().invoke(app, ["course", str(target), "--lang", "zh", "--force"])
    assert again.exit_code == 0 and has_cjk((target / "README.md").read_text())


WALKTHROUGH = "notebooks/walkthrough.ipynb"


@pytest.fixture(scope="module")
def walkthroughs():
    """{(model, lang): files} of --teach projects of every model, in both languages."""
    from scaffold.generate import render
    from scaffold.spec import OPTION_BY_NAME, build_spec

    return {
        (model, lang): render(build_spec("walk", model=model, teach=True, lang=lang))
        for model in OPTION_BY_NAME["model"].values
        for lang in ("en", "zh")
    }


def test_walkthrough_comes_with_teach_only_and_is_clean(walkthroughs, tmp_path):
    import black

    from scaffold.generate import render
    from scaffold.spec import build_spec

    assert WALKTHROUGH not in render(build_spec("walk"))
    for (model, lang), files in walkthroughs.items():
        text = files[WALKTHROUGH]
        for code in code_cells(text):
            assert black.format_str(code, mode=black.Mode()) == code + "\n", (model, lang)
        (tmp_path / f"{model}_{lang}.ipynb").write_text(text)
        en, zh = walkthroughs[model, "en"][WALKTHROUGH], walkthroughs[model, "zh"][WALKTHROUGH]
        assert [code_shape(c) for c in code_cells(en)] == [code_shape(c) for c in code_cells(zh)]
        cells = json.loads(text)["cells"]
        prose = [source(c) for c in cells if c["cell_type"] == "markdown"]
        assert all(has_cjk(p) for p in prose) == (lang == "zh"), (model, lang)
        steps = ["build_datasets(", "build_model(", "loss_fn(", ".backward()", ".step()"]
        steps += ["save_checkpoint(", "load_checkpoint(", "train(run)", "metrics.jsonl"]
        assert all(any(s in c for c in code_cells(text)) for s in steps), (model, lang)
    assert_ruff_clean(tmp_path, first_party=("walk",))


@pytest.mark.slow
def test_walkthrough_executes_in_a_jupyter_kernel(tmp_path):
    """The notebook of a --teach project, run top to bottom from notebooks/ in an ipykernel:
    one step by hand, a checkpoint round trip, a few training steps and the loss curve."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from scaffold.generate import generate
    from scaffold.spec import build_spec

    def execute(item):
        model, lang = item
        root = tmp_path / f"{model}_{lang}"
        generate(build_spec(root.name, model=model, teach=True, lang=lang), root)
        nb = nbformat.read(root / WALKTHROUGH, as_version=4)
        nbclient.NotebookClient(
            nb,
            timeout=180,
            kernel_name="python3",
            resources={"metadata": {"path": root / "notebooks"}},
        ).execute()
        return root, nb

    items = [("mlp", "en"), ("gpt", "zh"), ("cnn", "zh"), ("transformer", "en")]
    with ThreadPoolExecutor(2) as pool:
        for (model, lang), (root, nb) in zip(items, pool.map(execute, items), strict=True):
            out = "".join(
                o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
            )
            assert ("True" in out) and (root / "runs/walkthrough/step1.pt").is_file(), out
            rows = (root / "runs/walkthrough/run/metrics.jsonl").read_text().splitlines()
            losses = [json.loads(r)["loss"] for r in rows if '"train"' in r]
            assert losses[-1] < losses[0], (model, lang, losses)
            assert ("损失" in out) == (lang == "zh"), out
