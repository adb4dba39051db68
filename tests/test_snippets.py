"""`dlgen snippet`: standalone, runnable sections of the cheat sheet, rendered from the same
templates as the projects, in English or Chinese."""

import ast
import re
import subprocess
import sys
import tomllib

import black
import pytest
from conftest import assert_ruff_clean
from test_render import code_only
from typer.testing import CliRunner

from scaffold.cli import app
from scaffold.generate import render, snippet
from scaffold.render import templates_dir
from scaffold.spec import SNIPPETS, build_spec, snippet_spec

NAMES = [s.name for s in SNIPPETS]


def has_cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def texts(lang: str) -> list[str]:
    with open(templates_dir() / "comments" / f"{lang}.toml", "rb") as f:
        entries = tomllib.load(f)
    return [v for e in entries.values() for k, v in e.items() if k in ("brief", "teach")]


@pytest.mark.parametrize("name", NAMES)
def test_every_snippet_renders_clean_in_both_languages(name, tmp_path):
    variants = {
        (lang, teach): snippet(name, teach=teach, lang=lang)
        for lang in ("en", "zh")
        for teach in (False, True)
    }
    for (lang, teach), text in variants.items():
        compile(text, name, "exec")
        assert black.format_str(text, mode=black.Mode()) == text, (lang, teach)
        (tmp_path / f"{name.replace('-', '_')}_{lang}_{int(teach)}.py").write_text(text)
        assert 'if __name__ == "__main__":' in text
    # The code is the same in every language; only comments, docstrings and the text of
    # strings (printed messages) change.
    codes = {code_shape(text) for text in variants.values()}
    assert len(codes) == 1
    assert not has_cjk(variants["en", True])
    assert has_cjk(variants["zh", True]) and has_cjk(variants["zh", False])
    # Every English text that the Chinese file does not share (code-like ones it does).
    english = [t[:40] for t in set(texts("en")) - set(texts("zh")) if t.count(" ") > 4]
    for lang_text in (variants["zh", True], variants["zh", False]):
        assert not any(sentence in lang_text for sentence in english)
    assert_ruff_clean(tmp_path)


def code_shape(source: str) -> str:
    """The code without comments and docstrings, every string's text blanked (an f-string
    keeps its {fields}): what must be the same in every language."""

    class Blank(ast.NodeTransformer):
        def visit_Constant(self, node):
            return ast.Constant("") if isinstance(node.value, str) else node

        def visit_JoinedStr(self, node):
            fields = [v for v in node.values if isinstance(v, ast.FormattedValue)]
            return ast.JoinedStr([self.visit(v) for v in fields])

    return ast.unparse(Blank().visit(ast.parse(code_only(source))))


def top_level(source: str) -> dict[str, str]:
    """Each top-level function and class, without comments and docstrings: a snippet's
    docstring speaks of the snippet, the project's of the project."""
    tree = ast.parse(code_only(source))
    return {
        n.name: ast.unparse(n) for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))
    }


@pytest.mark.parametrize("name", NAMES)
def test_snippets_and_projects_share_their_code(name):
    snip, spec = snippet_spec(name)
    project = {}
    for rel, text in render(spec).items():
        if rel.endswith(".py"):
            project.update(top_level(text))
    shared = 0
    for fn, source in top_level(snippet(name)).items():
        if fn in project and fn not in ("main", "Config"):
            assert source == project[fn], fn
            shared += 1
    if name == "schedulers":  # build_<value> here is build_scheduler in a project
        ours = top_level(snippet(name))
        for value in ("cosine", "step", "warmup-cosine", "cosine-restarts", "onecycle"):
            fn = "build_" + value.replace("-", "_")
            train = render(build_spec("snippet", scheduler=value))["snippet/optim.py"]
            expected = top_level(train)["build_scheduler"].replace("build_scheduler", fn, 1)
            assert ours[fn] == expected, value
            shared += 1
    if name != "tensors":
        assert shared >= 1, f"{name} shares no code with a project"


def test_unknown_snippet_exits_2_with_the_list():
    result = CliRunner().invoke(app, ["snippet", "atention"])
    assert result.exit_code == 2
    assert "did you mean 'attention'" in result.stderr and "grad-checkpointing" in result.stderr


def test_output_file(tmp_path):
    out = tmp_path / "attn.py"
    result = CliRunner().invoke(app, ["snippet", "attention", "--lang", "zh", "-o", str(out)])
    assert result.exit_code == 0 and has_cjk(out.read_text())


EXPECT = {
    "tensors": "clone leaves the original alone: True",
    "mlp": "-> logits (8, 4)",
    "cnn": "64x64 images -> logits (2, 10)",
    "training-loop": "epoch 2:",
    "schedulers": "warmup-cosine",
    "regularization": "clipped to 1.000",
    "attention": "matches nn.MultiheadAttention: True",
    "transformer-layer": "matches nn.TransformerEncoderLayer: True",
    "amp": "fp16: logits torch.float16",
    "ddp": "the same averaged gradient: True",
    "save-load": "weights restored: True",
    "grad-checkpointing": "same gradients: True",
}


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_snippet_demos_run_and_show_their_point(name, tmp_path):
    path = tmp_path / f"{name}.py"
    path.write_text(snippet(name, teach=True, lang="en"))
    result = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert EXPECT[name] in result.stdout, result.stdout


def comments_and_docstrings(source: str) -> list[str]:
    import io
    import tokenize

    found = [
        t.string
        for t in tokenize.generate_tokens(io.StringIO(source).readline)
        if t.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                found.append(doc)
    return found


def test_chinese_output_has_no_english_prose():
    """Every comment and docstring of a --lang zh project or snippet is Chinese (code-like
    ones such as shapes aside): none was left written into a template in English."""
    import re

    from scaffold.matrix import pairwise

    prose = re.compile(r"\b[a-z]{3,} [a-z]{2,} [a-z]{2,}\b")
    sources = [snippet(s.name, teach=True, lang="zh") for s in SNIPPETS]
    for spec in pairwise():
        zh = build_spec(spec.name, **{**spec.answers(), "lang": "zh", "teach": True})
        sources += [t for rel, t in render(zh).items() if rel.endswith(".py")]
    for source in sources:
        for text in comments_and_docstrings(source):
            assert has_cjk(text) or not prose.search(text), text


def test_a_teach_zh_project_trains(project, tmp_path):
    pytest.importorskip("torch")
    with project("kecheng", model="transformer", teach=True, lang="zh") as p:
        text = (p.path / "kecheng" / "train.py").read_text()
        assert "梯度" in text and "学习率" in (p.path / "kecheng" / "optim.py").read_text()
        cfg = p.module("config").Config(
            out_dir=str(tmp_path),
            device="cpu",
            max_steps=30,
            eval_every=30,
            num_samples=256,
            d_model=32,
            d_ff=64,
            n_layers=1,
            seq_len=16,
            lr=3e-3,
        )
        metrics = p.module("train").train(cfg)
    assert metrics["accuracy"] > 0.5


def test_teach_adds_to_every_snippet():
    for name in NAMES:
        for lang in ("en", "zh"):
            assert snippet(name, teach=True, lang=lang) != snippet(name, lang=lang), (name, lang)


def test_zh_snippets_print_chinese():
    """Printed results and assert messages are in the reader's language too."""
    for name in NAMES:
        zh = snippet(name, teach=True, lang="zh")
        for node in ast.walk(ast.parse(zh)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "print":
                texts = [a for a in node.args if isinstance(a, (ast.Constant, ast.JoinedStr))]
                parts = [ast.unparse(a) for a in texts]
                assert not parts or any(has_cjk(p) for p in parts), (name, ast.unparse(node))


def test_snippets_speak_of_the_code_in_front_of_the_reader():
    for name in NAMES:
        for lang in ("en", "zh"):
            text = snippet(name, teach=True, lang=lang)
            for word in ("cheat sheet", "速查表", "--precision", "CPU tests"):
                assert word not in text, (name, lang, word)


def english_prose(text: str) -> list[str]:
    """Lines with English prose (three lower-case words in a row) once code blocks, inline
    code, URLs, flags, paths and identifiers are taken out."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"`[^`]*`|https?://\S+|--?[\w-]+|\S*[/_.<>=]\S*", "", text)
    prose = re.compile(r"\b[a-z]{3,} [a-z]{2,} [a-z]{2,}\b", re.I)
    return [line for line in text.splitlines() if prose.search(line)]


@pytest.mark.parametrize("model", ["mlp", "cnn", "transformer", "gpt"])
def test_a_zh_project_reads_chinese(model, project, capsys):
    """README.md, configs/default.toml and the train CLI's --help of a --lang zh project
    (every option of that model on) hold no English prose: identifiers, flags, code and
    URLs only; its config errors are Chinese too. The same check finds English prose in
    the English project."""
    options = dict(model=model, teach=True, amp=True, ema=True, tensorboard=True, ddp=True)
    options.update(tooling=True, grad_checkpointing=True, compile=True, scheduler="onecycle")
    for lang in ("zh", "en"):
        with project(f"p{model}{lang}", **options, lang=lang) as p:
            readme = (p.path / "README.md").read_text(encoding="utf-8")
            toml = (p.path / "configs" / "default.toml").read_text(encoding="utf-8")
            with pytest.raises(SystemExit):
                p.module("config").load_config(["--help"])
            help_text = capsys.readouterr().out
            with pytest.raises(SystemExit):
                p.module("config").load_config(["--lrr", "0.1"])
            error = capsys.readouterr().err
        assert "'lrr'" in error and "'lr'" in error and has_cjk(error) == (lang == "zh")
        # a Chinese paragraph is one line: a Markdown line break would show as a space
        assert not re.search(r"[\u4e00-\u9fff，。；：]\n[\u4e00-\u9fff]", readme)
        for name, text in [("README.md", readme), ("default.toml", toml), ("--help", help_text)]:
            found = english_prose(text)
            assert bool(found) == (lang == "en"), (name, found)
            assert has_cjk(text) == (lang == "zh"), name


def test_every_config_field_has_a_chinese_help():
    from scaffold.spec import CONFIG_FIELDS, CONFIG_HELP_ZH

    helps = {f.help for fields in CONFIG_FIELDS.values() for f in fields}
    missing = sorted(helps - set(CONFIG_HELP_ZH))
    assert not missing, f"add these to CONFIG_HELP_ZH in scaffold/spec.py: {missing}"
    assert not set(CONFIG_HELP_ZH) - helps, "CONFIG_HELP_ZH holds helps no field has"
    assert all(has_cjk(text) for text in CONFIG_HELP_ZH.values())
