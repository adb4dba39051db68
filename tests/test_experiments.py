"""Issue #16, experiments: the run folder explains itself, the report, trackers, sweeps.
Each generated project is trained in-process, as in test_loop.py."""

import dataclasses
import json
import subprocess

import pytest
from conftest import ProjectImport, make_project

torch = pytest.importorskip("torch")

TINY = dict(device="cpu", num_samples=256, log_every=2, eval_every=4, save_every=4)


def git(root, *args):
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


def test_the_run_folder_explains_itself_and_reproduces_the_run(tmp_path):
    root = make_project(tmp_path, "runs1")
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "generated")
    out, again = tmp_path / "run", tmp_path / "again"
    with ProjectImport(root, "runs1") as p:
        config, train = p.module("config"), p.module("train").train
        load = p.module("checkpoint").load_checkpoint
        train(config.Config(**TINY, out_dir=str(out), max_steps=8))
        run = json.loads((out / "run.json").read_text())
        assert run["dlgen"] and run["options"]["model"] == "mlp"
        assert run["git"]["dirty"] is False and len(run["git"]["commit"]) == 40
        assert run["world_size"] == 1 and run["device"] == "cpu"
        assert run["torch"] == torch.__version__ and run["history"] == []
        summary = json.loads((out / "summary.json").read_text())
        assert summary["status"] == "finished" and summary["step"] == 8
        assert summary["samples"] == 8 * 64 and summary["mean_samples_per_s"] > 0
        val = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        val = [e for e in val if e["split"] == "val"]
        assert summary["last"]["step"] == 8
        assert summary["best"]["loss"] == min(e["loss"] for e in val)

        # --config <out_dir>/config.toml trains the same run again, bitwise on CPU
        cfg = config.load_config(["--config", str(out / "config.toml"), "--out-dir", str(again)])
        train(cfg)
        a, b = load(out / "checkpoints/last.pt"), load(again / "checkpoints/last.pt")
        for key, value in a["model"].items():
            assert torch.equal(value, b["model"][key]), key

        # a resumed run appends to the history and keeps its first start
        (root / "runs1/model.py").write_text((root / "runs1/model.py").read_text() + "\n")
        train(config.Config(**TINY, out_dir=str(out), max_steps=12, resume="auto"))
    resumed = json.loads((out / "run.json").read_text())
    assert resumed["start_time"] == run["start_time"]
    assert [h["resumed_at"] for h in resumed["history"]] == [8]
    assert resumed["history"][0]["git"]["dirty"] is True
    summary = json.loads((out / "summary.json").read_text())
    assert summary["step"] == 12 and summary["wall_time"] > 0
    assert summary["last"]["step"] == 12


def test_a_stopped_run_says_so_and_a_resume_rebuilds_its_summary(tmp_path, monkeypatch):
    root = make_project(tmp_path, "runs2", model="gpt")
    out = tmp_path / "run"
    with ProjectImport(root, "runs2") as p:
        Config, train_module = p.module("config").Config, p.module("train")
        tiny = dict(corpus_chars=4000, d_model=16, d_ff=32, n_layers=1, seq_len=8)
        cfg = Config(device="cpu", log_every=2, eval_every=4, save_every=4, max_steps=12, **tiny)
        real_save = train_module.save_checkpoint

        class Killed(Exception):
            pass

        def save_then_die(path, state, **kwargs):
            real_save(path, state, **kwargs)
            if path.name == "last.pt" and state["step"] == 8:
                raise Killed

        monkeypatch.setattr(train_module, "save_checkpoint", save_then_die)
        with pytest.raises(Killed):
            train_module.train(dataclasses.replace(cfg, out_dir=str(out)))
        monkeypatch.undo()
        running = json.loads((out / "summary.json").read_text())
        assert running["status"] == "running" and running["last"]["step"] == 8
        train_module.train(dataclasses.replace(cfg, out_dir=str(out), resume="auto"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["tokens"] == 12 * 32 * 8
    events = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    val = [e for e in events if e["split"] == "val"]
    assert [e["step"] for e in val] == [0, 4, 8, 12]
    assert summary["best"]["loss"] == min(e["loss"] for e in val)
    assert summary["mean_tokens_per_s"] > 0


def test_the_report_overlays_runs_and_tabulates_what_differs(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    root = make_project(tmp_path, "rep")
    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "report"
    with ProjectImport(root, "rep") as p:
        Config, train = p.module("config").Config, p.module("train").train
        train(Config(**TINY, out_dir=str(a), max_steps=8))
        train(Config(**TINY, out_dir=str(b), max_steps=12, lr=3e-3))
        with (a / "metrics.jsonl").open("a") as f:
            f.write('{"step": 9, "spl')  # torn by a crash
        (b / "summary.json").unlink()  # as if still running
        report = p.module("report")
        capsys.readouterr()
        report.main([str(a), str(b), "-o", str(out)])
        err = capsys.readouterr().err
        assert "metrics.jsonl:" in err and "damaged; skipped" in err
        with pytest.raises(SystemExit) as info:
            report.main([str(b), str(tmp_path), "-o", str(out)])
        assert info.value.code == 2
        assert capsys.readouterr().err.count("\n") == 1
        monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
        with pytest.raises(SystemExit) as info:
            report.main([str(a), "-o", str(tmp_path / "none")])
        assert info.value.code == 1
        assert "pip install matplotlib" in capsys.readouterr().err
    for name in ("loss", "lr", "accuracy", "throughput"):
        assert (out / f"{name}.png").stat().st_size > 1000, name
    text = (out / "report.md").read_text()
    header, _, row_a, row_b = text.splitlines()[2:6]
    assert "| lr |" in header and "max_steps" in header and "seed" not in header
    assert row_a.startswith("| a | finished | 8 | 0.001 | 8 | loss ")
    assert row_b.startswith("| b | running | 12 | 0.003 | 12 |") and "accuracy" in row_b
    assert "![loss](loss.png)" in text
