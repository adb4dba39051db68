"""Issue #13 on the generated side: a wrong file, a bad value or a foreign checkpoint is
one line on stderr and exit 1 (data, checkpoint) or 2 (config), never a traceback, and
never a run that trains on data it should have refused. The cases are classes of input
(encodings, formats, shapes, ranges), each with its adversarial examples; a
property-based fuzz feeds the config loader and the data readers random input."""

import contextlib
import io
import math
import shutil
import tempfile
from pathlib import Path

import pytest
from conftest import ProjectImport, make_project
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaffold.spec import build_spec

torch = pytest.importorskip("torch")

TINY = ["--device", "cpu", "--max-steps", "1", "--log-every", "1"]


@pytest.fixture(scope="module")
def projects(tmp_path_factory):
    """One generated project per model (and a regression MLP), shared by the module."""
    root = tmp_path_factory.mktemp("inputs")
    made = {}
    for key, options in {
        "mlp": dict(model="mlp"),
        "cnn": dict(model="cnn"),
        "transformer": dict(model="transformer"),
        "gpt": dict(model="gpt"),
        "mlpreg": dict(model="mlp", task="regression"),
    }.items():
        name = f"in{key}"
        make_project(root, name, **options)
        made[key] = (root / name, build_spec(name, **options).package)
    return made


def open_project(projects, key):
    return ProjectImport(*projects[key])


def run(p, module, argv):
    """Run a project's main(); return (exit code, stderr). 0 when it returns."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            p.module(module).main(argv)
            code = 0
        except SystemExit as e:
            code = e.code
    return code, err.getvalue()


def assert_one_line(code, err, expected_code, *needles):
    assert code == expected_code, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("error: "), err
    for needle in needles:
        assert needle in err, err


# 1. and 2. Files in the wrong encoding or format; data that trains but should not.

CSV_CASES = {
    "latin-1": (b"a,b,label\n1,2,caf\xe9\n3,4,x\n", ["latin-1.csv", "not a UTF-8 CSV"]),
    "binary": (bytes(range(256)) * 4, ["binary.csv", "not a UTF-8 CSV"]),
    "nul": (b"a,b,label\n1,\x00,x\n", ["nul.csv:2", "column 'b'"]),
    "extra field": (b"a,b,label\n1,2,x\n3,4,y,z\n5,6,x\n", ["extra field.csv:3", "fields"]),
    "missing field": (b"a,b,label\n1,2,x\n3,4\n", ["missing field.csv:3", "fields"]),
    "one class": (b"a,b,label\n1,2,x\n3,4,x\n5,6,x\n", ["every row is of class 'x'"]),
    "nan": (b"a,b,label\n1,2,x\n3,nan,y\n", ["nan.csv:3", "column 'b'", "'nan'"]),
    "inf": (b"a,b,label\n-inf,2,x\n3,4,y\n", ["inf.csv:2", "column 'a'", "'-inf'"]),
    "two rows": (b"a,b,label\n1,1,x\n1,1,y\n", ["fewer than 2 (one batch, and 2"]),
    "overflow": (b"a,b,label\n1e999,2,x\n3,4,y\n", ["overflow.csv:2", "column 'a'"]),
    # finite in float64, inf in the float32 tensor
    "float32 overflow": (b"a,b,label\n1e39,2,x\n3,4,y\n", ["overflow.csv:2", "'1e39'"]),
    "duplicate column": (b"a,a,label\n1,2,x\n3,4,y\n", ["names a column twice: a"]),
    "only the target": (b"label\nx\ny\nx\n", ["no feature columns besides the target"]),
    "no target": (b"a,b,target\n1,2,x\n3,4,y\n", ["no target column 'label'", "--target"]),
    "empty target": (b"a,b,label\n1,2,x\n3,4, \n5,6,y\n", ["empty target.csv:3", "empty"]),
    "huge field": (b"a,label\n" + b"1" * 200_000 + b",x\n", ["cannot be read as CSV"]),
}


@pytest.mark.parametrize("case", CSV_CASES)
def test_csv_problems_are_one_line_naming_file_and_row(projects, tmp_path, case):
    content, needles = CSV_CASES[case]
    path = tmp_path / f"{case}.csv"
    path.write_bytes(content)
    argv = ["--data-path", str(path), "--out-dir", str(tmp_path / "run"), "--batch-size", "1"]
    with open_project(projects, "mlp") as p:
        assert_one_line(*run(p, "train", argv + TINY), 1, *needles)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_a_folder_as_csv_is_one_line(projects, tmp_path):
    argv = ["--data-path", str(tmp_path), "--out-dir", str(tmp_path / "run")]
    with open_project(projects, "mlp") as p:
        assert_one_line(*run(p, "train", argv + TINY), 1, "is a folder")


def test_regression_target_must_be_finite(projects, tmp_path):
    path = tmp_path / "reg.csv"
    path.write_text("a,label\n1,2\n3,inf\n")
    argv = ["--data-path", str(path), "--out-dir", str(tmp_path / "run"), "--batch-size", "1"]
    with open_project(projects, "mlpreg") as p:
        assert_one_line(*run(p, "train", argv + TINY), 1, "reg.csv:3", "column 'label'")


def write_npz_cases(folder: Path) -> dict:
    np = pytest.importorskip("numpy")
    x = np.zeros((8, 3, 8, 8), dtype=np.float32)
    np.save(folder / "one.npy", x)
    (folder / "table.npz").write_text("a,b\n1,2\n")
    np.savez(folder / "objects.npz", x=np.array([object()] * 8, dtype=object))
    np.savez(folder / "strings.npz", x=np.array(["a"] * 8), y=np.arange(8))
    np.savez(folder / "short_y.npz", x=x, y=np.arange(5))
    bad = x.copy()
    bad[5, 1, 2, 3] = np.nan
    np.savez(folder / "nan_x.npz", x=bad, y=np.arange(8) % 2)
    np.savez(folder / "flat.npz", x=np.zeros((8, 64)), y=np.arange(8) % 2)
    np.savez(folder / "no_x.npz", images=x)
    (folder / "broken.npz").write_bytes(b"PK\x03\x04" + bytes(100))
    return {
        "one.npy": "not a zip of arrays",
        "table.npz": "not a zip of arrays",
        "objects.npz": "Object arrays cannot be loaded",
        "strings.npz": "can't convert",
        "short_y.npz": "y must have shape (8,)",
        "nan_x.npz": "x[5] holds nan or inf",
        "flat.npz": "(N, C, H, W), got (8, 64)",
        "no_x.npz": "no array named x (found: images)",
        "broken.npz": "broken.npz",
    }


def test_npz_problems_are_one_line_naming_file_and_shape(projects, tmp_path):
    cases = write_npz_cases(tmp_path)
    with open_project(projects, "cnn") as p:
        for name, needle in cases.items():
            argv = ["--data-path", str(tmp_path / name), "--out-dir", str(tmp_path / name)]
            assert_one_line(*run(p, "train", argv + TINY), 1, name, needle)


def test_corrupt_image_and_single_class_folder(projects, tmp_path):
    Image = pytest.importorskip("PIL.Image")
    for label in ("a", "b"):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / label / "ok.png")
    (tmp_path / "imgs" / "b" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(50))
    (tmp_path / "one" / "cat").mkdir(parents=True)
    Image.new("L", (8, 8)).save(tmp_path / "one" / "cat" / "x.png")
    with open_project(projects, "cnn") as p:
        argv = ["--data-path", str(tmp_path / "imgs"), "--out-dir", str(tmp_path / "r1")]
        argv += ["--batch-size", "1"]  # an image is decoded when it is met, not up front
        assert_one_line(*run(p, "train", argv + TINY), 1, "bad.png", "not a readable image")
        argv = ["--data-path", str(tmp_path / "one"), "--out-dir", str(tmp_path / "r2")]
        assert_one_line(*run(p, "train", argv + TINY), 1, "every image is of class 'cat'")


def test_text_files_in_another_encoding(projects, tmp_path):
    (tmp_path / "latin.tsv").write_bytes(b"a\tcaf\xe9\nb\tthe\n")
    (tmp_path / "one.tsv").write_text("a\thello\na\tworld\n" * 3)
    (tmp_path / "latin.txt").write_bytes(b"caf\xe9 " * 100)
    with open_project(projects, "transformer") as p:
        for name, needle in (("latin.tsv", "not UTF-8"), ("one.tsv", "every line")):
            argv = ["--data-path", str(tmp_path / name), "--out-dir", str(tmp_path / name)]
            argv += ["--batch-size", "1"]
            assert_one_line(*run(p, "train", argv + TINY), 1, name, needle)
    with open_project(projects, "gpt") as p:
        argv = ["--data-path", str(tmp_path / "latin.txt"), "--out-dir", str(tmp_path / "g")]
        assert_one_line(*run(p, "train", argv + TINY), 1, "latin.txt", "not UTF-8")


# 3. Config values.

CONFIG_CASES = [
    ("mlp", ["--dropout", "1.5"], "dropout must be in [0, 1], got 1.5"),
    ("mlp", ["--dropout", "-0.1"], "dropout must be in [0, 1]"),
    ("mlp", ["--val-fraction", "1"], "val_fraction must be in (0, 1)"),
    ("mlp", ["--label-smoothing", "1"], "label_smoothing must be in [0, 1)"),
    ("mlp", ["--betas", "0.9", "1.0"], "betas must be in [0, 1)"),
    ("mlp", ["--betas", "0.9"], "betas must be two numbers"),
    ("mlp", ["--lr", "nan"], "lr must be > 0, got nan"),
    ("mlp", ["--lr", "inf"], "lr must be a finite number, got inf"),
    ("mlp", ["--weight-decay", "nan"], "weight_decay must be >= 0, got nan"),
    ("mlp", ["--grad-clip", "inf"], "grad_clip must be a finite number, got inf"),
    ("mlp", ["--min-lr=-inf"], "min_lr must be >= 0"),
    ("mlp", ["--device", "cuda:x"], "device must be auto, cpu, cuda, cuda:N or mps"),
    ("mlp", ["--device", "cuda:"], "device must be"),
    ("mlp", ["--device", "cuda:-1"], "device must be"),
    ("mlp", ["--hidden-dims", "64", "0"], "hidden_dims must be >= 1, got [64, 0]"),
    ("mlp", ["--num-samples", "0"], "num_samples must be >= 1"),
    ("mlp", ["--num-classes", "1"], "num_classes must be >= 2"),
    ("mlp", ["--seed", "-1"], "seed must be in [0, 2**32)"),
    ("mlp", ["--hidden-dims", "1000000", "1000000"], "parameters, more than memory"),
    ("mlp", ["--num-samples", "100000000000"], "synthetic data would hold"),
    ("cnn", ["--channels", "0"], "channels must be >= 1"),
    ("cnn", ["--image-size", "0"], "image_size must be >= 1"),
    ("cnn", ["--image-size", "2", "--channels", "8", "8"], "image_size must be >= 4"),
    ("cnn", ["--in-channels", "-3"], "in_channels must be >= 1"),
    ("cnn", ["--image-size", "100000"], "synthetic data would hold"),
    ("transformer", ["--attn-dropout", "2"], "attn_dropout must be in [0, 1]"),
    ("transformer", ["--d-model", "10", "--n-heads", "3"], "divisible by n_heads"),
    ("transformer", ["--vocab-size", "2"], "vocab_size must be >= 3"),
    ("gpt", ["--seq-len", "0"], "seq_len must be >= 1"),
    ("gpt", ["--n-heads", "0"], "n_heads must be >= 1"),
    ("gpt", ["--n-layers", "-2"], "n_layers must be >= 1"),
    ("gpt", ["--d-ff", "0"], "d_ff must be >= 1"),
    ("gpt", ["--d-model", "0"], "d_model must be >= 1"),
    ("gpt", ["--corpus-chars", "0"], "corpus_chars must be >= 1"),
    ("gpt", ["--d-model", "100000", "--n-heads", "1"], "parameters, more than memory"),
]


@pytest.mark.parametrize("key, argv, needle", CONFIG_CASES)
def test_config_values_exit_2_with_one_line(projects, tmp_path, key, argv, needle):
    with open_project(projects, key) as p:
        code, err = run(p, "train", argv + ["--out-dir", str(tmp_path)])
    assert_one_line(code, err, 2, needle)
    assert not any(tmp_path.iterdir())


def test_config_files_and_out_dir(projects, tmp_path):
    (tmp_path / "latin.toml").write_bytes(b"lr = 0.1  # caf\xe9\n")
    (tmp_path / "huge.toml").write_text("lr = " + "9" * 400 + "\n")
    (tmp_path / "nan.toml").write_text("dropout = nan\n")
    (tmp_path / "a_file").write_text("not a folder")
    with open_project(projects, "mlp") as p:
        cases = [
            (["--config", str(tmp_path / "latin.toml")], "latin.toml: not UTF-8 text"),
            (["--config", str(tmp_path / "huge.toml")], "lr must be float"),
            (["--config", str(tmp_path / "nan.toml")], "dropout must be in [0, 1], got nan"),
            (["--config", str(tmp_path / "missing.toml")], "missing.toml"),
            (["--out-dir", str(tmp_path / "a_file")], "a file is in the way"),
            (["--out-dir", str(tmp_path / "a_file" / "run")], "a file is in the way"),
        ]
        for argv, needle in cases:
            assert_one_line(*run(p, "train", argv + TINY), 2, needle)


# 4. Checkpoint contents.


@pytest.fixture(scope="module")
def trained(projects, tmp_path_factory):
    """A one-step checkpoint of the MLP, the CNN and the GPT."""
    root = tmp_path_factory.mktemp("trained")
    sizes = {
        "mlp": ["--num-samples", "128", "--hidden-dims", "8"],
        "cnn": ["--num-samples", "64", "--channels", "4", "--image-size", "8"]
        + ["--batch-size", "8"],
        "gpt": ["--corpus-chars", "2000", "--d-model", "16", "--n-layers", "1"],
    }
    paths = {}
    for key, argv in sizes.items():
        with open_project(projects, key) as p:
            code, err = run(p, "train", argv + TINY + ["--out-dir", str(root / key)])
        assert code == 0, err
        paths[key] = root / key / "checkpoints" / "last.pt"
    return paths


def test_foreign_and_configless_checkpoints(projects, trained, tmp_path):
    ckpt = torch.load(trained["mlp"], weights_only=True)
    torch.save(ckpt["model"], tmp_path / "weights.pt")
    torch.save({k: v for k, v in ckpt.items() if k != "config"}, tmp_path / "noconf.pt")
    torch.save({"step": 3}, tmp_path / "nothing.pt")
    with open_project(projects, "gpt") as p:
        code, err = run(p, "sample", ["--checkpoint", str(trained["mlp"])])
        assert_one_line(code, err, 1, "comes from another project")
        code, err = run(p, "sample", ["--checkpoint", str(tmp_path / "weights.pt")])
        assert_one_line(code, err, 1, "weights.pt has no config")
    with open_project(projects, "mlp") as p:
        for name, needle in (
            (str(trained["gpt"]), "comes from another project"),
            (str(tmp_path / "noconf.pt"), "noconf.pt has no config"),
            (str(tmp_path / "nothing.pt"), "nothing.pt holds no model weights"),
        ):
            assert_one_line(*run(p, "predict", ["--checkpoint", name]), 1, needle)
        argv = ["--init-from", str(tmp_path / "nothing.pt"), "--out-dir", str(tmp_path / "n")]
        assert_one_line(*run(p, "train", argv + TINY), 1, "holds no model weights")


def test_init_from_a_plain_state_dict(projects, trained, tmp_path):
    weights = torch.load(trained["mlp"], weights_only=True)["model"]
    torch.save(weights, tmp_path / "weights.pt")
    with open_project(projects, "mlp") as p:
        checkpoint, path = p.module("checkpoint"), tmp_path / "weights.pt"
        # a bare state_dict is taken as the weights, as the "model" of a checkpoint is
        assert (
            checkpoint.weights_of(checkpoint.load_checkpoint(path), path).keys() == weights.keys()
        )
        argv = ["--num-samples", "128", "--hidden-dims", "8", "--lr", "1e-9"]
        argv += ["--init-from", str(tmp_path / "weights.pt"), "--out-dir", str(tmp_path)]
        code, err = run(p, "train", argv + TINY + ["--weight-decay", "0"])
        assert code == 0, err
    tuned = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.allclose(tuned[k], weights[k], atol=1e-6) for k in weights)


def test_grayscale_images_for_an_rgb_model(projects, trained, tmp_path):
    np = pytest.importorskip("numpy")
    np.savez(tmp_path / "gray.npz", x=np.zeros((4, 1, 8, 8), dtype=np.float32))
    argv = ["--checkpoint", str(trained["cnn"]), "--data-path", str(tmp_path / "gray.npz")]
    with open_project(projects, "cnn") as p:
        assert_one_line(*run(p, "predict", argv), 1, "1 channels", "trained on 3")


# 6. and 7. Empty prompt; readable predictions.


def test_empty_prompt_starts_from_the_first_vocabulary_entry(projects, trained, capsys):
    with open_project(projects, "gpt") as p:
        p.module("sample").main(
            ["--checkpoint", str(trained["gpt"]), "--prompt", "", "--max-new-tokens", "7"]
        )
        assert len(capsys.readouterr().out) == 7 + 1  # the text and print's newline
        for argv in (["--temperature", "nan"], ["--max-new-tokens", "-1"]):
            with pytest.raises(SystemExit) as exit_info:
                p.module("sample").main(["--checkpoint", str(trained["gpt"]), *argv])
            assert exit_info.value.code == 2


def test_predict_prints_a_tsv_of_rows(projects, trained, capsys):
    with open_project(projects, "mlp") as p:
        p.module("predict").main(["--checkpoint", str(trained["mlp"])])
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == "row\tprediction" and lines[1].startswith("1\t")
    assert [line.split("\t")[0] for line in lines[1:]] == [str(i) for i in range(1, len(lines))]
    assert "accuracy" in captured.err and "accuracy" not in captured.out


def test_numpy_is_a_dependency(projects):
    """Without NumPy, torch warns "Failed to initialize NumPy" on the first run."""
    path, _ = projects["mlp"]
    assert '"numpy"' in (path / "pyproject.toml").read_text()


# 8. Property-based fuzz: every outcome is a Config, or exit 2 with one error line.

SOME_FIELDS = [
    "lr",
    "dropout",
    "batch_size",
    "hidden_dims",
    "device",
    "seed",
    "betas",
    "val_fraction",
    "label_smoothing",
    "num_samples",
    "weight_decay",
    "bogus",
]
VALUES = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.booleans(),
    st.lists(st.one_of(st.integers(-5, 10**6), st.floats()), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f'"{k}" = {toml_value(v)}' for k, v in value.items()) + "}"


def assert_config_or_exit_2(load_config, argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            load_config(argv)
        except SystemExit as e:
            assert e.code == 2, err.getvalue()
            lines = err.getvalue().splitlines()
            assert lines and "error: " in lines[-1], err.getvalue()
            assert sum("error: " in line for line in lines) == 1, err.getvalue()
            assert "Traceback" not in err.getvalue()


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.dictionaries(st.sampled_from(SOME_FIELDS), VALUES, max_size=4), st.binary(max_size=40))
def test_fuzz_config_flags_and_files(projects, fields, raw):
    folder = Path(tempfile.mkdtemp())
    try:
        toml = folder / "c.toml"
        toml.write_text(
            "".join(f"{k} = {toml_value(v)}\n" for k, v in fields.items()),
            encoding="utf-8",
        )
        (folder / "raw.toml").write_bytes(raw)
        argv = []
        for key, value in fields.items():
            argv.append("--" + key.replace("_", "-"))
            argv += [str(v) for v in value] if isinstance(value, list) else [str(value)]
        with open_project(projects, "mlp") as p:
            load_config = p.module("config").load_config
            assert_config_or_exit_2(load_config, ["--config", str(toml)])
            assert_config_or_exit_2(load_config, ["--config", str(folder / "raw.toml")])
            assert_config_or_exit_2(load_config, argv)
    finally:
        shutil.rmtree(folder)


CELLS = st.sampled_from(["1", "0", "-2.5", "x", "y", "nan", "inf", "", "é", "1e999", '"a,b"'])
NUMBERS = st.sampled_from(["1", "0", "-2.5", "3e2", "7"])
RAGGED_ROWS = st.lists(CELLS, min_size=1, max_size=4)
GOOD_ROWS = st.tuples(NUMBERS, NUMBERS, st.sampled_from(["x", "y", "z"])).map(list)
CSV_ROWS = st.one_of(
    st.lists(GOOD_ROWS, min_size=3, max_size=12),
    st.lists(st.one_of(GOOD_ROWS, RAGGED_ROWS), min_size=1, max_size=12),
)
CSV_TEXT = CSV_ROWS.map(lambda rows: "\n".join(["a,b,label", *map(",".join, rows)]) + "\n")


def train_outcome(p, data: bytes, suffix: str, extra: list[str]) -> None:
    """Train one step on the data: success, or exit 1 or 2 with one error line."""
    folder = Path(tempfile.mkdtemp())
    try:
        (folder / f"data{suffix}").write_bytes(data)
        argv = ["--data-path", str(folder / f"data{suffix}"), "--out-dir", str(folder / "r")]
        code, err = run(p, "train", argv + TINY + extra)
        assert "Traceback" not in err
        if code:
            lines = err.splitlines()
            assert code in (1, 2) and lines[-1].startswith("error: "), err
            assert sum(line.startswith("error: ") for line in lines) == 1, err
    finally:
        shutil.rmtree(folder)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(CSV_TEXT.map(str.encode), st.binary(max_size=200)))
def test_fuzz_csv_files(projects, data):
    with open_project(projects, "mlp") as p:
        train_outcome(p, data, ".csv", ["--batch-size", "1", "--hidden-dims", "4"])


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(st.text(max_size=300).map(str.encode), st.binary(max_size=300)))
def test_fuzz_text_and_npz_files(projects, data):
    with open_project(projects, "gpt") as p:
        extra = ["--seq-len", "4", "--batch-size", "2", "--d-model", "8", "--n-heads", "1"]
        train_outcome(p, data, ".txt", extra + ["--n-layers", "1"])
    with open_project(projects, "transformer") as p:
        train_outcome(p, data, ".tsv", ["--batch-size", "1", "--d-model", "8"])
    with open_project(projects, "cnn") as p:
        train_outcome(p, data, ".npz", ["--batch-size", "1", "--channels", "2"])


def test_regression_predict_names_a_bad_target_cell(projects, tmp_path):
    """predict on a labelled CSV reports RMSE; a target cell that is not a number is the
    same one line as in training, not a ValueError."""
    data = tmp_path / "reg.csv"
    data.write_text("a,b,label\n" + "".join(f"{i},{i % 3},{i / 2}\n" for i in range(32)))
    with open_project(projects, "mlpreg") as p:
        argv = ["--data-path", str(data), "--out-dir", str(tmp_path / "run")]
        assert run(p, "train", argv + ["--batch-size", "8"] + TINY)[0] == 0
        ckpt = str(tmp_path / "run/checkpoints/last.pt")
        assert run(p, "predict", ["--checkpoint", ckpt, "--data-path", str(data)])[0] == 0
        data.write_text("a,b,label\n1,2,3\n4,5,\n")
        argv = ["--checkpoint", ckpt, "--data-path", str(data)]
        assert_one_line(*run(p, "predict", argv), 1, "reg.csv:3", "column 'label'")
