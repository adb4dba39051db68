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


def test_an_mlflow_run_killed_and_resumed_is_one_run_with_each_step_once(
    tmp_path, monkeypatch, capsys
):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = make_project(tmp_path, "flow", tracker="mlflow")
    out = tmp_path / "run"
    with ProjectImport(root, "flow") as p:
        Config, train_module = p.module("config").Config, p.module("train")
        cfg = Config(**{**TINY, "save_every": 6}, out_dir=str(out), max_steps=16)
        real_save = train_module.save_checkpoint

        class Killed(Exception):
            pass

        def die_before_the_second_save(path, state, **kwargs):
            if path.name == "last.pt" and state["step"] == 12:
                raise Killed
            real_save(path, state, **kwargs)

        monkeypatch.setattr(train_module, "save_checkpoint", die_before_the_second_save)
        with pytest.raises(Killed):
            train_module.train(cfg)
        monkeypatch.undo()
        # the tracker logged steps 8 to 12 after the checkpoint (step 6): the resume
        # trains them again and sends each step once
        ckpt = p.module("checkpoint").load_checkpoint(out / "checkpoints/last.pt")
        assert ckpt["step"] == 6 and ckpt["tracker"]["run_id"]
        train_module.train(dataclasses.replace(cfg, resume="auto"))
        # a tracker that fails warns once and training goes on
        monkeypatch.setenv("MLFLOW_TRACKING_URI", "bogus://nowhere")
        capsys.readouterr()
        train_module.train(dataclasses.replace(cfg, out_dir=str(tmp_path / "b")))
        err = capsys.readouterr().err
        assert err.count("warning: MLflow failed") == 1
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1 and runs[0].info.run_id == ckpt["tracker"]["run_id"]
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.params["max_steps"] == "16"
    for key, split in (("train/loss", "train"), ("val/loss", "val")):
        steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, key)]
        events = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        assert sorted(steps) == [e["step"] for e in events if e["split"] == split], key


def test_an_offline_wandb_run_resumes_as_a_new_run_in_the_same_group(tmp_path, monkeypatch, capsys):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    root = make_project(tmp_path, "wb", tracker="wandb")
    out = tmp_path / "run"
    with ProjectImport(root, "wb") as p:
        Config, train = p.module("config").Config, p.module("train").train
        load = p.module("checkpoint").load_checkpoint
        train(Config(**TINY, out_dir=str(out), max_steps=8))
        first = load(out / "checkpoints/last.pt")["tracker"]
        train(Config(**TINY, out_dir=str(out), max_steps=12, resume="auto"))
        second = load(out / "checkpoints/last.pt")["tracker"]
    assert "warning" not in capsys.readouterr().err.replace("cannot be resumed", "")
    assert first["run_id"] != second["run_id"] and first["group"] == second["group"]
    assert len(list((out / "wandb").glob("offline-run-*"))) == 2


SWEEP = """
trials = 6
out_dir = {out!r}
[fixed]
max_steps = 8
eval_every = 4
save_every = 4
log_every = 2
num_samples = 256
device = "cpu"
[params]
lr = {{ low = 1e-4, high = 1e-2, log = true }}
dropout = {{ choices = [0.0, 0.1] }}
"""


def finished_trials(storage: str) -> list:
    import optuna

    study = optuna.load_study(study_name="sweep", storage=storage)
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return study.get_trials(states=states)


def test_a_sweep_killed_after_two_trials_resumes_to_six_and_a_best_config(
    tmp_path, monkeypatch, capsys
):
    pytest.importorskip("optuna")
    root = make_project(tmp_path, "swp", sweep=True)
    out = tmp_path / "sweep"
    toml = tmp_path / "sweep.toml"
    with ProjectImport(root, "swp") as p:
        sweep, train_module = p.module("sweep"), p.module("train")
        # mistakes stop before any trial, with one line and exit 2
        for bad in ("lrr = { low = 1, high = 2 }", "lr = { low = 2, high = 1 }"):
            toml.write_text(SWEEP.format(out=str(out)).replace("dropout = {", f"{bad}\n#"))
            capsys.readouterr()
            with pytest.raises(SystemExit) as info:
                sweep.main(["--config", str(toml)])
            assert info.value.code == 2 and capsys.readouterr().err.count("\n") == 1
            assert not out.exists()
        toml.write_text(SWEEP.format(out=str(out)))
        monkeypatch.setattr(sweep, "HEARTBEAT", 1)
        monkeypatch.setattr(sweep, "GRACE", 2)
        real_save = train_module.save_checkpoint

        def kill_the_third_trial(path, state, **kwargs):
            real_save(path, state, **kwargs)
            if "trial-002" in str(path) and path.name == "last.pt" and state["step"] == 4:
                raise SystemExit(137)  # like kill -9: the trial stays RUNNING

        monkeypatch.setattr(train_module, "save_checkpoint", kill_the_third_trial)
        with pytest.raises(SystemExit):
            sweep.main(["--config", str(toml)])
        storage = f"sqlite:///{out / 'study.db'}"
        assert len(finished_trials(storage)) == 2
        monkeypatch.setattr(train_module, "save_checkpoint", real_save)
        import time

        time.sleep(3)  # the killed trial's heartbeat goes stale
        sweep.main(["--config", str(toml)])
        Config = p.module("config").Config
        best = p.module("config").load_config(["--config", str(out / "best.toml")])
    assert isinstance(best, Config) and best.out_dir == str(out / "best")
    trials = finished_trials(storage)
    assert len(trials) == 6
    # the interrupted trial was retried in its own folder and resumed from step 4
    assert "trial-002" in {t.user_attrs["folder"] for t in trials}
    history = json.loads((out / "trial-002/run.json").read_text())["history"]
    assert [h["resumed_at"] for h in history] == [4]


@pytest.mark.slow
def test_two_sweep_processes_on_one_storage_share_the_trials(tmp_path):
    pytest.importorskip("optuna")
    import sys

    root = make_project(tmp_path, "swp2", sweep=True)
    out = tmp_path / "sweep"
    (root / "sweep.toml").write_text(SWEEP.format(out=str(out)))
    out.mkdir()
    command = [sys.executable, "-m", "swp2.sweep", "--config", "sweep.toml"]
    procs = [
        subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()[-2000:]
    trials = finished_trials(f"sqlite:///{out / 'study.db'}")
    # each process checks the shared total before a trial: one may start the 7th
    assert 6 <= len(trials) <= 7
    folders = [t.user_attrs["folder"] for t in trials]
    assert len(set(folders)) == len(folders) and (out / "best.toml").exists()
