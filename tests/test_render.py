"""Every option combination renders code that is black-stable, ruff-clean and compiles."""

import ast
import hashlib
import re

import black
import jinja2
import pytest
from conftest import assert_ruff_clean

from scaffold.context import build_context
from scaffold.formatting import needs_black
from scaffold.generate import render
from scaffold.matrix import combinations, pairwise
from scaffold.render import environment, expand_comments, render_project, wrap
from scaffold.spec import OPTION_BY_NAME, build_spec

AXES = ("model", "task", "optimizer", "scheduler")
MODE = black.Mode(line_length=88)


def code_only(source: str) -> str:
    """The source without comments and docstrings."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                body[0] = ast.Pass()
    return ast.unparse(tree)


def unique_python_files(specs):
    """{sha: (where, text)} of every distinct .py file, so each is checked once."""
    seen = {}
    for spec in specs:
        for rel, text in render(spec).items():
            if rel.endswith(".py"):
                seen.setdefault(hashlib.sha256(text.encode()).hexdigest(), (f"{spec}:{rel}", text))
    return seen


@pytest.fixture(scope="module")
def matrix_files():
    """Every model x task x optimizer x scheduler; teach, lang and attention cycle through."""
    specs = list(combinations(AXES, name="proj"))
    specs += [build_spec("x" * 64, teach=True)]  # a long name runs black at generation time
    return unique_python_files(specs)


@pytest.mark.slow
def test_matrix_is_black_stable_and_compiles(matrix_files):
    for where, text in matrix_files.values():
        compile(text, where, "exec")
        assert black.format_str(text, mode=MODE) == text, f"not black-stable: {where}"


def test_templates_render_black_stable_code_without_black():
    """Generation never imports black for an ordinary name: no rendered line is too long."""
    for spec in combinations(AXES, name="proj"):
        for rel, text in render_project(spec, build_context(spec)).items():
            assert not (rel.endswith(".py") and needs_black(text)), f"{spec}: {rel}"


@pytest.mark.parametrize("model", OPTION_BY_NAME["model"].values)
def test_each_model_is_black_stable(model):
    for where, text in unique_python_files([build_spec("proj", model=model)]).values():
        assert black.format_str(text, mode=MODE) == text, f"not black-stable: {where}"


def test_matrix_is_ruff_clean(matrix_files, tmp_path):
    for i, (_, text) in enumerate(matrix_files.values()):
        (tmp_path / f"f{i}.py").write_text(text)
    assert_ruff_clean(tmp_path, first_party=("proj", "x" * 64))


def test_only_the_code_you_asked_for():
    plain = render(build_spec("demo", scheduler="none"))
    assert "lr_scheduler" not in plain["demo/train.py"]
    assert "scheduler" not in plain["demo/checkpoint.py"]
    regression = render(build_spec("demo", task="regression"))
    assert "accuracy" not in regression["demo/train.py"]
    assert "label_smoothing" not in regression["demo/config.py"]
    assert "demo/sample.py" not in plain


def test_no_deprecated_apis_in_any_combination(matrix_files):
    banned = [
        "torch.cuda.amp",
        "torch.save(model",
        "-1e9",
        "CosineAnnealingWarmRestarts(optimizer, T_0=10",
    ]
    for where, text in matrix_files.values():
        code = code_only(text)
        for needle in banned:
            assert needle not in code, f"{needle} in {where}"
        if "torch.load(" in text:
            assert "weights_only=True" in text, where


def test_templates_fail_loudly_on_a_typo():
    template = environment().from_string("{{ modle }}")
    with pytest.raises(jinja2.UndefinedError):
        template.render(build_context(build_spec("demo")))


def test_user_values_are_data_not_templates(tmp_path):
    # A name is validated to an identifier; anything that reaches code goes through |py.
    spec = build_spec("Jinja-Proj")
    files = render_project(spec, build_context(spec))
    assert "from jinja_proj.config import Config" in files["jinja_proj/train.py"]
    literal = environment().from_string("x = {{ v | py }}").render(v='{{ 7 * 7 }}"; import os')
    assert literal == 'x = "{{ 7 * 7 }}\\"; import os"'


def test_comment_markers_expand_in_each_language():
    source = "def f():\n    #: grad_accum\n    return 1\n"
    brief = expand_comments(source, "en", teach=False, pkg="p", where="t")
    taught = expand_comments(source, "en", teach=True, pkg="p", where="t")
    assert taught.count("\n    # ") > brief.count("\n    # ") >= 1
    assert "\n    # Gradients add up" in brief  # indented like the code it explains
    with pytest.raises(KeyError, match="no comment text"):
        expand_comments("#: no_such_id\n", "en", teach=False, pkg="p", where="t")


ARGPARSE_ZH = {"ARGPARSE_ZH", "SECTIONS_ZH", "in_chinese", "Help"}


def without_argparse_zh(source: str) -> str:
    """A zh project's config.py translates argparse's own English (its usage prefix, section
    titles and error messages): the one piece of code only Chinese needs."""
    tree = ast.parse(source)

    def defines(node) -> bool:
        targets = getattr(node, "targets", [])
        return bool(
            {getattr(n, "id", getattr(node, "name", None)) for n in targets or [node]} & ARGPARSE_ZH
        )

    def uses(node) -> bool:
        return any(getattr(n, "id", None) in ARGPARSE_ZH for n in ast.walk(node))

    tree.body = [n for n in tree.body if not defines(n)]
    for f in ast.walk(tree):
        if isinstance(f, ast.FunctionDef):
            f.body = [n for n in f.body if not uses(n)] or [ast.Pass()]
    return ast.unparse(tree)


def test_code_is_identical_across_languages():
    """The same code in every language, but for the text of its strings (`t("id")`, the
    Config fields' help)."""
    from test_snippets import code_shape

    for model in OPTION_BY_NAME["model"].values:
        en = render(build_spec("proj", model=model, teach=True, lang="en"))
        zh = render(build_spec("proj", model=model, teach=True, lang="zh"))
        for rel, text in en.items():
            if rel.endswith(".py"):
                assert code_shape(text) == code_shape(without_argparse_zh(zh[rel])), rel
                assert not re.search(r"[\u4e00-\u9fff]", text), rel
                assert re.search(r"[\u4e00-\u9fff]", zh[rel]), rel


def test_wrap_handles_cjk_width():
    text = "梯度在多个微批次上累积，" * 6 + "再更新参数。"
    lines = wrap(text, 40)
    assert all(len(line) * 2 <= 40 for line in lines) and "".join(lines) == text


def test_wrap_breaks_chinese_only_between_words():
    """After Chinese punctuation or next to a Latin token; never inside a word or a quote."""
    text = (
        "每个微批次的损失都除以微批次数，所以累加后的梯度等于一个大批次平均损失的梯度；"
        "重启后若出现 'Gloo / connectFullMesh failed'，说明复用了旧的 store，"
        "见 `dist.PrefixStore` 的用法。"
    )
    for width in range(20, 90, 7):
        lines = wrap(text, width)
        assert "".join(lines).replace(" ", "") == text.replace(" ", "")
        assert sum("'Gloo / connectFullMesh failed'" in line for line in lines) == 1
        for a, b in zip(lines, lines[1:], strict=False):
            assert not (is_cjk(a[-1]) and is_cjk(b[0])), (width, a, b)


def is_cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff"


def zh_outputs():
    """Every --lang zh file a user gets: each snippet, and a project for each model."""
    from scaffold.generate import snippet
    from scaffold.spec import SNIPPETS

    for s in SNIPPETS:
        yield s.name, snippet(s.name, teach=True, lang="zh")
    for model in OPTION_BY_NAME["model"].values:
        spec = build_spec("proj", model=model, teach=True, lang="zh", amp=True, ema=True)
        yield from ((rel, t) for rel, t in render(spec).items() if rel.endswith(".py"))
    for extra in ({"ddp": True}, {"fsdp": True}, {"grad_checkpointing": True, "model": "cnn"}):
        spec = build_spec("proj", teach=True, lang="zh", **extra)
        yield from ((rel, t) for rel, t in render(spec).items() if rel.endswith(".py"))


def test_no_zh_comment_breaks_a_chinese_word():
    """A Chinese comment or docstring line never ends in a Chinese character that the next
    line continues: lines break after punctuation or next to a Latin token."""
    for where, text in zh_outputs():
        lines = text.split("\n")
        for a, b in zip(lines, lines[1:], strict=False):
            a, b = a.strip(), b.strip()
            if a.startswith("#") and b.startswith("#"):
                a, b = a[1:].strip(), b[1:].strip()
            if a and b and not a.startswith(('"""', "#")) and not b.startswith('"""'):
                assert not (is_cjk(a[-1]) and is_cjk(b[0])), f"{where}: {a} / {b}"


def test_state_file_records_answers_and_base():
    files = render(build_spec("demo", optimizer="sgd"))
    assert 'optimizer = "sgd"' in files[".dlgen.toml"]
    assert '"demo/train.py" = "' in files[".dlgen.toml"]
    assert '"demo/train.py"' in files[".dlgen/base.json"]


def test_zh_texts_use_the_glossary():
    """One Chinese term per English term (templates/comments/glossary.toml)."""
    import tomllib

    from scaffold.render import templates_dir

    folder = templates_dir() / "comments"
    glossary = tomllib.loads((folder / "glossary.toml").read_text())
    zh = (folder / "zh.toml").read_text()
    for term, entry in glossary.items():
        assert entry["zh"] in zh, term
        for variant in entry["avoid"]:
            assert variant not in zh, f"{variant!r}: write {entry['zh']!r} for {term}"


def test_the_generated_loop_keeps_its_budget():
    """docs/design.md: the card example's train.py is at most 320 lines, and no generated
    function is longer than 120, also with every option on and --teach's longer comments."""
    card = render(build_spec("card", model="transformer", amp=True, ddp=True))
    assert len(card["card/train.py"].splitlines()) <= 320
    specs = pairwise() + [
        build_spec("big", model=m, amp=True, ddp=True, ema=True, compile=True, teach=True)
        for m in OPTION_BY_NAME["model"].values
    ]
    for spec in specs:
        for rel, text in render(spec).items():
            if rel.endswith(".py"):
                for node in ast.walk(ast.parse(text)):
                    if isinstance(node, ast.FunctionDef):
                        length = node.end_lineno - node.lineno + 1
                        assert length <= 120, f"{spec}: {rel}:{node.name} is {length} lines"
