"""Generated projects treat mistakes, faults and interruptions as normal: a clear error,
and nothing lost or half-written."""

import os
import signal
import subprocess
import sys

import pytest
from conftest import make_project, wait_until

torch = pytest.importorskip("torch")


def run_main(p, module, argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        p.module(module).main(argv)
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--lrr", "0.1"], "unknown field 'lrr' (did you mean 'lr'?)"),
        (["--batch-size", "ten"], "error: --batch-size: 'ten' is not a whole number"),
        (["--lr", "0"], "lr must be > 0"),
        (["--batch-size", "0"], "batch_size must be >= 1"),
        (["--max-steps", "-1"], "max_steps must be >= 0"),
    ],
)
def test_config_errors_exit_2_before_training(project, tmp_path, capsys, argv, needle):
    with project("cfgerr") as p:
        code, err = run_main(p, "train", argv + ["--out-dir", str(tmp_path)], capsys)
    assert code == 2 and needle in err and "Traceback" not in err
    assert err.count("\n") == 1, err
    assert not (tmp_path / "metrics.jsonl").exists()


@pytest.mark.parametrize(
    "module, argv, needle",
    [
        ("train", ["--lr", "abc"], "error: --lr: 'abc' is not a number (see --help)"),
        ("train", ["--batch-size", "1.5"], "--batch-size: '1.5' is not a whole number"),
        ("train", ["--hidden-dims", "8", "x"], "--hidden-dims: 'x' is not a whole number"),
        ("train", ["--lr"], "--lr: expected one argument"),
        ("train", ["--seed", "1", "2"], "unexpected argument '2'"),
        ("predict", ["--bogus"], "unrecognized arguments: --bogus"),
        ("predict", ["--checkpoint"], "--checkpoint: expected one argument"),
        ("export", [], "the following arguments are required"),
    ],
)
def test_flag_errors_are_one_line_not_a_usage_block(project, capsys, module, argv, needle):
    with project("flagerr") as p:
        code, err = run_main(p, module, argv, capsys)
    assert code == 2 and err.count("\n") == 1 and needle in err, err
    assert err.startswith("error: ") and "usage:" not in err


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_sample_and_prepare_errors_are_one_line_too(project, capsys, lang):
    zh = lang == "zh"
    cases = [
        ("sample", ["--bogus"], "无法识别的参数：--bogus" if zh else "unrecognized arguments"),
        ("sample", ["--top-k", "x"], "--top-k: 'x'"),
        ("prepare", [], "缺少必需的参数：INPUT" if zh else "arguments are required: INPUT"),
        ("prepare", ["a", "--out", "b", "--tokenizer", "q"], "'q'（可选：" if zh else "'q'"),
        ("prepare", ["a", "--out", "b", "--val-fraction", "2"], "--val-fraction"),
        ("prepare", ["a", "--out", __file__ + "/shards"], "--out"),  # under a file
    ]
    with project(f"argerr{lang}", model="gpt", lang=lang) as p:
        for module, argv, needle in cases:
            code, err = run_main(p, module, argv, capsys)
            assert code == 2 and err.count("\n") == 1 and needle in err, (argv, err)
            assert err.startswith("错误：" if zh else "error: ") and "usage" not in err
        with pytest.raises(SystemExit):
            p.module("prepare").main(["--help"])
        usage = capsys.readouterr().out
    assert usage.startswith("用法：" if zh else "usage: ") and ("选项" in usage) == zh


def test_missing_tensorboard_is_one_line_naming_the_pip_install(project, monkeypatch):
    """A --tensorboard project run where tensorboard is not installed."""
    for name in [m for m in sys.modules if m.startswith("torch.utils.tensorboard")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard fails
    with project("notb", tensorboard=True) as p, pytest.raises(SystemExit) as exit_info:
        p.module("train")
    message = exit_info.value.code  # a str: Python prints it to stderr and exits 1
    assert isinstance(message, str) and "\n" not in message
    assert message.startswith("error: ") and "pip install tensorboard" in message


def has_cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def test_a_zh_project_errors_and_logs_in_chinese(project, tmp_path, capsys):
    """#17: config errors, checkpoint errors and the printed metric lines of a --lang zh
    project are Chinese; field names and numbers stay as they are."""
    with project("zhcuo", lang="zh") as p:
        code, err = run_main(p, "train", ["--lr", "0", "--dropout", "2"], capsys)
        assert code == 2 and has_cjk(err) and "lr" in err and "dropout" in err, err
        assert err.count("\n") == 1, err
        code, err = run_main(p, "train", ["--batch-size", "1.5"], capsys)
        assert code == 2 and has_cjk(err) and "--batch-size" in err and "1.5" in err, err
        ckpt = p.module("checkpoint")
        (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
        for path in (tmp_path / "broken.pt", tmp_path / "missing.pt"):
            with pytest.raises(ckpt.CheckpointError) as error:
                ckpt.load_checkpoint(path)
            assert has_cjk(str(error.value)) and path.name in str(error.value)
        with pytest.raises(FloatingPointError, match="inf 或 nan"):
            ckpt.save_checkpoint(tmp_path / "nan.pt", {"w": torch.tensor([float("nan")])})

        class Run:  # what MetricsLog tells the run folder
            def event(self, event):
                pass

            def write(self, step, status=None):
                pass

        metrics = p.module("metrics")
        log = metrics.MetricsLog(tmp_path / "metrics.jsonl", None, 10, Run())
        log.write("val", 3, 0, loss=0.5)
        log.close(3)
        with (tmp_path / "metrics.jsonl").open("a") as f:
            f.write('{"step": 4, "spl')  # torn by a crash
        assert len(metrics.read_events(tmp_path / "metrics.jsonl")) == 1
        lines = capsys.readouterr().err.splitlines()
    assert "val 第 3 步：loss=0.5" in lines, lines
    assert any(has_cjk(line) and "metrics.jsonl:2" in line for line in lines), lines


def test_config_file_errors(project, tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('lr = "fast"\n')
    typo = tmp_path / "typo.toml"
    typo.write_text("epohcs = 3\n")
    with project("cfgfile") as p:
        assert "lr must be float" in run_main(p, "train", ["--config", str(bad)], capsys)[1]
        assert "did you mean 'epochs'" in run_main(p, "train", ["--config", str(typo)], capsys)[1]


@pytest.mark.parametrize(
    "content, needle",
    [
        (None, "no data file at"),
        ("a,b,label\n", "has no data rows"),
        ("a,b,label\n1,x,0\n", "column 'b' is not a finite"),
        ("a,b\n1,2\n", "has no target column 'label'"),
        ("a,b,label\n1,2,0\n3,4,1\n", "fewer than 64 (one batch"),
    ],
)
def test_data_errors_are_one_clear_line(project, tmp_path, capsys, content, needle):
    path = tmp_path / "data.csv"
    if content is not None:
        path.write_text(content)
    with project("dataerr") as p:
        code, err = run_main(
            p, "train", ["--data-path", str(path), "--out-dir", str(tmp_path)], capsys
        )
    assert code != 0 and needle in err and err.count("\n") == 1, err


def test_text_too_short_for_seq_len(project, tmp_path, capsys):
    (tmp_path / "tiny.txt").write_text("hello")
    with project("shorttext", model="gpt") as p:
        code, err = run_main(p, "train", ["--data-path", str(tmp_path / "tiny.txt")], capsys)
    assert code != 0 and "too short for seq_len" in err


def test_damaged_checkpoints(project, tmp_path, capsys):
    with project("ckerr") as p:
        Config, train = p.module("config").Config, p.module("train").train
        cfg = Config(
            out_dir=str(tmp_path), device="cpu", max_steps=20, save_every=10, num_samples=256
        )
        train(cfg)
        last = tmp_path / "checkpoints/last.pt"
        last.write_bytes(last.read_bytes()[:100])  # truncated, as by a full disk
        ckpt_mod = p.module("checkpoint")
        with pytest.raises(ckpt_mod.CheckpointError, match="not a readable checkpoint"):
            ckpt_mod.load_checkpoint(last)
        assert ckpt_mod.latest_checkpoint(last)["step"] == 10  # falls back to last.prev.pt
        code, err = run_main(p, "train", ["--resume", str(tmp_path / "nope.pt")], capsys)
        assert code != 0 and "no checkpoint at" in err
        # A checkpoint of another architecture names what differs.
        other = Config(
            out_dir=str(tmp_path / "b"),
            device="cpu",
            resume=str(tmp_path / "checkpoints/best.pt"),
            hidden_dims=[32],
            num_samples=256,
        )
        with pytest.raises(ckpt_mod.CheckpointError, match="different model config.*shapes differ"):
            train(other)


def test_nan_loss_stops_and_keeps_the_good_checkpoint(project, tmp_path):
    with project("nanproj") as p:
        train_mod = p.module("train")
        real = train_mod.loss_fn
        calls = []

        def poisoned(cfg, output, target):
            calls.append(1)
            loss = real(cfg, output, target)
            return loss * float("nan") if len(calls) == 15 else loss

        train_mod.loss_fn = poisoned
        try:
            cfg = p.module("config").Config(
                out_dir=str(tmp_path),
                device="cpu",
                max_steps=30,
                save_every=5,
                eval_every=100,
                num_samples=256,
            )
            # call 15 = one evaluation at step 0, then step 14
            with pytest.raises(FloatingPointError, match="at step 14"):
                train_mod.train(cfg)
        finally:
            train_mod.loss_fn = real
        ckpt = p.module("checkpoint").load_checkpoint(tmp_path / "checkpoints/last.pt")
    assert ckpt["step"] == 10
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_ctrl_c_saves_and_exits_130_then_resumes_exactly(project, tmp_path):
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when pytest runs in the background
    with project("sigint") as p:
        Config, train_mod = p.module("config").Config, p.module("train")
        base = dict(device="cpu", max_steps=24, save_every=100, eval_every=8, num_samples=512)
        train_mod.train(Config(out_dir=str(tmp_path / "full"), **base))
        real, calls = train_mod.loss_fn, []

        def interrupt(cfg, output, target):
            calls.append(1)
            if len(calls) == 11:  # evaluations at steps 0 and 8, so: during step 9
                os.kill(os.getpid(), signal.SIGINT)
            return real(cfg, output, target)

        train_mod.loss_fn = interrupt
        try:
            with pytest.raises(SystemExit) as exit_info:
                train_mod.train(Config(out_dir=str(tmp_path / "cut"), **base))
        finally:
            train_mod.loss_fn = real
        assert exit_info.value.code == 130
        ckpt_mod = p.module("checkpoint")
        assert ckpt_mod.load_checkpoint(tmp_path / "cut/checkpoints/last.pt")["step"] == 9
        train_mod.train(Config(out_dir=str(tmp_path / "cut"), resume="auto", **base))
        a = ckpt_mod.load_checkpoint(tmp_path / "full/checkpoints/last.pt")["model"]
        b = ckpt_mod.load_checkpoint(tmp_path / "cut/checkpoints/last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert signal.getsignal(signal.SIGINT) is before  # restored


@pytest.mark.slow
def test_sigterm_saves_and_exits_143(tmp_path):
    root = make_project(tmp_path, "sigterm")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sigterm.train",
            "--max-steps",
            "100000",
            "--save-every",
            "100000",
            "--device",
            "cpu",
        ],
        cwd=root,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = root / "runs/default/metrics.jsonl"
    wait_until(lambda: metrics.exists() and metrics.read_text().count("\n") > 3, 60)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "continue with --resume auto" in err
    ckpt = torch.load(root / "runs/default/checkpoints/last.pt", weights_only=True)
    assert ckpt["step"] > 0


@pytest.mark.slow
def test_sigkill_during_a_checkpoint_write_keeps_the_previous_one(tmp_path):
    root = make_project(tmp_path, "killsave")
    script = (
        "import torch, sys\n"
        "from pathlib import Path\n"
        "from killsave.checkpoint import save_checkpoint\n"
        "path = Path('ck/last.pt')\n"
        "save_checkpoint(path, {'step': 1, 'w': torch.ones(3)}, keep_previous=True)\n"
        "print('saved', flush=True)\n"
        "save_checkpoint(path, {'step': 2, 'w': torch.zeros(60_000_000)}, keep_previous=True)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=root, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "saved"
    # Kill while the temporary file is being written: poll fast, the write is short.
    wait_until(lambda: any((root / "ck").glob(".last.pt.*.tmp")), 60, interval=0.001)
    proc.kill()
    proc.wait()
    ckpt = torch.load(root / "ck/last.pt", weights_only=True)
    assert ckpt["step"] == 1 and torch.equal(ckpt["w"], torch.ones(3))


def one_line(err: str) -> bool:
    return err.count("\n") == 1 and "Traceback" not in err


def test_round13_checkpoint_records_are_checked_before_predict_and_export(
    project, tmp_path, capsys
):
    """#13 B1, B2, C10, B3, B8, C5, A2: a checkpoint whose data, progress or weights are
    damaged is one line and exit 1 in predict, export and --resume; nothing is written."""

    with project("ckrec", ema=True) as p:
        Config, ckmod = p.module("config").Config, p.module("checkpoint")
        run = tmp_path / "run"
        cfg = Config(out_dir=str(run), device="cpu", max_steps=4, num_samples=64)
        cfg.hidden_dims, cfg.batch_size = [8], 8
        p.module("train").train(cfg)
        capsys.readouterr()
        last = run / "checkpoints/last.pt"
        good = torch.load(last, weights_only=True)

        def variant(name, change):
            c = torch.load(last, weights_only=True)
            change(c)
            torch.save(c, tmp_path / name)
            return str(tmp_path / name)

        def nan_ema(c):
            for v in c["ema"].values():
                if v.is_floating_point():
                    v.fill_(float("nan"))

        cases = {
            variant("nodata.pt", lambda c: c.update(data={})): "data['features']",
            variant("oneclass.pt", lambda c: c["data"].update(classes=["a"])): "classes",
            variant("nan.pt", nan_ema): "nan",
            variant("other.pt", lambda c: c["config"].update(d_model=8)): "d_model",
        }
        for path, needle in cases.items():
            for module, argv in (
                ("predict", ["--checkpoint", path]),
                ("export", [path, "-o", str(tmp_path / "exp")]),
            ):
                code, err = run_main(p, module, argv, capsys)
                assert code == 1 and one_line(err) and needle in err, (module, err)
                assert "unexpected keyword" not in err, err
            assert not (tmp_path / "exp").exists()
        # export -o through an existing file: a command mistake, exit 2, nothing loaded
        (tmp_path / "afile").write_text("x")
        for out in (tmp_path / "afile", tmp_path / "afile/sub"):
            code, err = run_main(p, "export", [str(last), "-o", str(out)], capsys)
            assert code == 2 and one_line(err) and "existing file" in err, err
        # a damaged step counter: --resume auto falls back to last.prev.pt ...
        prev = ckmod.previous(last)
        torch.save({**good, "step": 3}, prev)
        torch.save({**good, "step": "x"}, last)
        assert ckmod.latest_checkpoint(last)["step"] == 3
        assert "step must be a whole number" in capsys.readouterr().err
        # ... and with both damaged it stops with one line naming both files
        torch.save({**good, "step": "x"}, prev)
        code, err = run_main(
            p, "train", ["--out-dir", str(run), "--resume", "auto", "--max-steps", "6"], capsys
        )
        assert code == 1 and "last.pt and last.prev.pt cannot" in err, err
        assert "Traceback" not in err
        code, err = run_main(p, "train", ["--resume", str(last), "--max-steps", "6"], capsys)
        assert code == 1 and one_line(err) and "step must be a whole number" in err, err
        # another process moved last.pt away between the check and the rotation
        real = os.replace

        def racing(src, dst):
            if str(dst).endswith(".prev.pt"):
                os.unlink(src)
            real(src, dst)

        os.replace = racing
        try:
            ckmod.save_checkpoint(last, good, keep_previous=True)
        finally:
            os.replace = real
        assert torch.load(last, weights_only=True)["step"] == good["step"]


def test_round13_unloadable_files_say_why_in_one_line_without_warnings(project, tmp_path, capsys):
    """#13 C1, C6: a plain pickle, zeros, text and a truncated checkpoint each get one
    short line with a cause a user understands, and torch's UserWarning is not shown."""
    import collections
    import pickle
    import warnings

    torch.save({"w": torch.zeros(3)}, tmp_path / "good.pt")
    whole = (tmp_path / "good.pt").read_bytes()
    files = {
        "evil.pt": (pickle.dumps(collections.OrderedDict(a=1)), "pickle"),
        "zeros.pt": (bytes(1000), "not a torch checkpoint"),
        "text.pt": (b"hello world\n", "not a torch checkpoint"),
        "trunc.pt": (whole[: len(whole) // 2], "truncated"),
        "empty.pt": (b"", "empty"),
    }
    with project("ckwhy") as p:
        for name, (content, needle) in files.items():
            (tmp_path / name).write_bytes(content)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                code, err = run_main(p, "predict", ["--checkpoint", str(tmp_path / name)], capsys)
            assert code == 1 and one_line(err) and needle in err, err
            assert len(err) < 200 and "PyTorch 2.6" not in err, err
            assert not [w for w in caught if issubclass(w.category, UserWarning)], name


def test_round13_report_out_file_and_undecodable_metrics(project, tmp_path, capsys):
    """#13 B7, B9: report -o naming a file is one line, exit 2; a metrics.jsonl line that
    is not UTF-8 is skipped with a note like any damaged line."""
    run = tmp_path / "badm"
    run.mkdir()
    good = b'{"split": "val", "step": 1, "loss": 0.5}\n'
    (run / "metrics.jsonl").write_bytes(good + b"\xff\n" + good.replace(b"1,", b"2,"))
    (tmp_path / "afile").write_text("x")
    with project("rep") as p:
        code, err = run_main(p, "report", [str(run), "-o", str(tmp_path / "afile")], capsys)
        assert code == 2 and one_line(err) and "existing file" in err, err
        read = p.module("report").read_run(run)
    err = capsys.readouterr().err
    assert [e["step"] for e in read["events"]] == [1, 2]
    assert one_line(err) and "metrics.jsonl:2" in err and "damaged" in err, err


def test_round13_zh_checkpoint_messages_and_sample_device(project, tmp_path, capsys):
    """#13 B6, D, C5: sample --device bogus is exit 2 like train; another project's
    checkpoint and a plain checkpoints folder are said in Chinese, in one line."""
    with project("zhck", model="gpt", lang="zh") as p:
        code, err = run_main(p, "sample", ["--device", "bogus"], capsys)
        assert code == 2 and one_line(err) and has_cjk(err) and "bogus" in err, err
        Config = p.module("config").Config
        run = tmp_path / "run"
        cfg = Config(out_dir=str(run), device="cpu", max_steps=2, d_model=16, n_heads=2)
        cfg.n_layers, cfg.d_ff, cfg.seq_len, cfg.batch_size = 1, 32, 8, 4
        p.module("train").train(cfg)
        capsys.readouterr()
        last = run / "checkpoints/last.pt"
        c = torch.load(last, weights_only=True)
        c["config"]["target"] = "label"
        torch.save(c, tmp_path / "other.pt")
        for path, needle in ((tmp_path / "other.pt", "target"), (last.parent, "config.json")):
            code, err = run_main(p, "sample", ["--checkpoint", str(path)], capsys)
            assert code == 1 and one_line(err) and has_cjk(err) and needle in err, err
            assert "unexpected keyword" not in err and "Errno" not in err, err
        ck = p.module("checkpoint")
        last.write_bytes(b"")
        ck.previous(last).write_bytes(b"")
        with pytest.raises(ck.CheckpointError) as error:
            ck.latest_checkpoint(last)
        assert "last.pt 和 last.prev.pt" in str(error.value), error.value


def test_round13_fsdp_pointers_stay_inside_checkpoints_and_keep_last_range(tmp_path, capsys):
    """#13 C9, C10: a `latest` naming a folder outside checkpoints/ is ignored like a
    missing one; --keep-last -1 is a config error."""
    from conftest import ProjectImport

    root = make_project(tmp_path, "fptr", model="gpt", fsdp=True)
    with ProjectImport(root, "fptr") as p:
        ck, Config = p.module("checkpoint"), p.module("config").Config
        saver = ck.Saver(tmp_path / "run", Config(keep_last=0))
        folder = tmp_path / "run/checkpoints"
        for step in (2, 4):
            saver.save({"model": {"w": torch.zeros(4)}, "step": step, "world": 1}, step)
        for bad in ("../../../../etc", "/etc", "checkpoints", "step-x"):
            (folder / "latest").write_text(bad + "\n")
            assert ck.latest_folder(folder) == folder / "step-000004", bad
            with pytest.raises(ck.CheckpointError, match="step-NNNNNN"):
                ck.checkpoint_folder(folder / "latest")
        code, err = run_main(p, "train", ["--keep-last", "-1"], capsys)
        assert code == 2 and one_line(err) and "keep_last must be >= 0" in err, err
