"""A --lang zh project says everything its user reads in Chinese (issue #17): errors,
notes, warnings, progress lines and --help texts come from `t("id")`, not English literals."""

import ast
import re

import pytest

from scaffold.generate import render
from scaffold.spec import OPTION_BY_NAME, build_spec

CJK = re.compile(r"[\u4e00-\u9fff]")
WORD = re.compile(r"[A-Za-z]{2,}")
# An English message prefix that a Chinese project writes as 错误：/ 警告：/ 注意：
PREFIX = re.compile(r"^(error|warning|note):", re.IGNORECASE)
# Literals that are not prose: a warnings filter matches torch's English message.
NOT_PROSE = {"torch.distributed is (disabled|unavailable)"}

OPTIONS = [
    dict(amp=True, ema=True, tracker="mlflow", sweep=True, ddp=True, teach=True),
    dict(fsdp=True, amp=True, tracker="wandb", tensorboard=True),
    dict(task="regression", sweep=True),
]


def literal_text(node: ast.AST) -> str | None:
    """The text of a string literal; an f-string's literal parts, joined."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value for v in node.values if isinstance(v, ast.Constant))
    return None


def docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if literal_text(body[0].value) is not None:
                found.add(id(body[0].value))
    return found


def english_literals(source: str) -> list[tuple[int, str]]:
    """String literals of English prose in Chinese code: 3+ English words and no Chinese
    character, or an English `error:` prefix. Names, paths, flags, environment variables
    and regexes hold no space, so they pass."""
    tree = ast.parse(source)
    skip = docstrings(tree)  # and an f-string's parts, counted with the f-string
    skip |= {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    # A pair (English, Chinese) translates argparse's English: the English is matched, not said.
    for n in ast.walk(tree):
        if (
            isinstance(n, ast.Tuple)
            and len(n.elts) == 2
            and CJK.search(literal_text(n.elts[1]) or "")
        ):
            skip.add(id(n.elts[0]))
    found = []
    for node in ast.walk(tree):
        text = literal_text(node)
        if text is None or id(node) in skip or text in NOT_PROSE or CJK.search(text):
            continue
        prose = len(WORD.findall(text)) >= 3 and re.search(r"\s", text.strip())
        if prose or PREFIX.match(text.strip()):
            found.append((node.lineno, text))
    return found


def test_english_prose_is_found():
    source = 'raise E(f"no data file at {p}")\nx = "cuda_visible_devices"\n'
    source += 'print(f"error: {e}")\ny = "数据 at {} is empty"\n'
    source += 'PAIRS = [("expected one argument", "需要一个值"), ("bad thing here", "x")]\n'
    found = [text for _, text in english_literals(source)]
    assert found == ["no data file at ", "error: ", "bad thing here"]


@pytest.mark.parametrize("model", OPTION_BY_NAME["model"].values)
@pytest.mark.parametrize("options", OPTIONS, ids=["ddp", "fsdp", "regression"])
def test_zh_projects_print_no_english(model, options):
    if options.get("fsdp") and model != "gpt" or options.get("task") and model == "gpt":
        pytest.skip("not a combination dlgen offers")
    spec = build_spec("proj", model=model, lang="zh", **options)
    bad = []
    for rel, text in render(spec).items():
        if rel.endswith(".py") and not rel.startswith("tests/"):
            bad += [f"{rel}:{line}: {s!r}" for line, s in english_literals(text)]
    assert not bad, "\n".join(bad)
