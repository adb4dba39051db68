"""Issue #16, experiments: the run folder explains itself, the report, trackers, sweeps.
Each generated project is trained in-process, as in test_loop.py."""

import dataclasses
import json
import subprocess

import pytest
from conftest import ProjectImport, make_project, wait_until

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
        # a run.json or summary.json torn by the crash costs a warning, not the resume
        (out / "run.json").write_text('{"history": [')
        (out / "summary.json").write_bytes(b"\xff")
        train_module.train(dataclasses.replace(cfg, out_dir=str(out), resume="auto"))
    assert [h["resumed_at"] for h in json.loads((out / "run.json").read_text())["history"]] == [8]
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
        # a tracker that fails mid-run (disk full) warns once and training goes on
        real_log, sent = MlflowClient.log_batch, []

        def disk_full_at_the_third_call(self, *args, **kwargs):
            sent.append(1)
            if len(sent) >= 3:
                raise OSError("[Errno 28] No space left on device")
            return real_log(self, *args, **kwargs)

        monkeypatch.setattr(MlflowClient, "log_batch", disk_full_at_the_third_call)
        capsys.readouterr()
        b = tmp_path / "b"
        train_module.train(dataclasses.replace(cfg, out_dir=str(b)))
        err = capsys.readouterr().err
        assert err.count("warning: MLflow failed (") == 1 and "No space left" in err
        assert len(sent) == 3
        assert json.loads((b / "summary.json").read_text())["status"] == "finished"
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1 and runs[0].info.run_id == ckpt["tracker"]["run_id"]
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.params["max_steps"] == "16" and runs[0].data.tags["resumes"] == "1"
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


def fake_wandb(server: dict):
    """A wandb module that keeps its runs' logged (step, key) pairs in server, as the W&B
    service would online: a resumed run starts after the last step it holds."""
    import importlib.machinery
    import types

    wandb = types.ModuleType("wandb")
    wandb.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
    wandb.calls = []

    class Run:
        def __init__(self, id):
            self.id, self.exit_code = id, None
            self.starting_step = max((s for s, _ in server[id]), default=-1) + 1

        def log(self, values, step):
            server[self.id] += [(step, key) for key in values]

        def finish(self, exit_code):
            self.exit_code = exit_code

    def init(id=None, resume=None, **kwargs):
        wandb.calls.append(dict(id=id, resume=resume, **kwargs))
        if resume != "must":
            id = f"run-{len(server)}"
            server[id] = []
        return Run(id)

    wandb.init = init
    return wandb


def test_an_online_wandb_run_killed_and_resumed_is_one_run_with_each_step_once(
    tmp_path, monkeypatch
):
    server = {}
    monkeypatch.setitem(__import__("sys").modules, "wandb", fake_wandb(server))
    monkeypatch.setenv("WANDB_MODE", "online")
    root = make_project(tmp_path, "wbo", tracker="wandb")
    out = tmp_path / "run"
    with ProjectImport(root, "wbo") as p:
        Config, train_module = p.module("config").Config, p.module("train")
        wandb = __import__("sys").modules["wandb"]
        # only rank 0 talks to the tracker
        p.module("tracking").Tracker(Config(), out, False).log("train", 1, {"loss": 1.0})
        assert wandb.calls == []
        cfg = Config(**{**TINY, "save_every": 6}, out_dir=str(out), max_steps=16)
        real_save = train_module.save_checkpoint

        def die_before_the_second_save(path, state, **kwargs):
            if path.name == "last.pt" and state["step"] == 12:
                raise RuntimeError("killed")
            real_save(path, state, **kwargs)

        monkeypatch.setattr(train_module, "save_checkpoint", die_before_the_second_save)
        with pytest.raises(RuntimeError):
            train_module.train(cfg)
        monkeypatch.setattr(train_module, "save_checkpoint", real_save)
        train_module.train(dataclasses.replace(cfg, resume="auto"))
    first, again = wandb.calls
    assert first["resume"] is None and first["config"]["max_steps"] == 16
    assert first["mode"] == "online" and first["dir"] == str(out)
    assert again["id"] == "run-0" and again["resume"] == "must"
    assert again["config"] is None and again["group"] == first["group"]
    logged = server["run-0"]
    assert list(server) == ["run-0"] and len(logged) == len(set(logged))
    events = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    for split in ("train", "val"):
        steps = sorted(s for s, key in logged if key == f"{split}/loss")
        assert steps == [e["step"] for e in events if e["split"] == split], split


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


BAD_SWEEPS = {
    "lrr = { low = 1, high = 2 }": "did you mean",
    "weight_decay = { low = 0.2, high = 0.1 }": "low < high",
    "batch_size = { low = 8, high = 0 }": "params.batch_size needs low < high",  # not ">= 1"
    "dropout = { low = 0.1 ": "not valid TOML",
    "dropout = { low = 0.0, high = 1.5 }": "params.dropout: dropout must be in [0, 1]",
    "batch_size = { choices = 64 }": "choices must be a non-empty list",
    "max_steps = { low = 2, high = 8 }": "max_steps is both in [fixed] and in [params]",
    "out_dir = { choices = ['a', 'b'] }": "out_dir is set by the sweep",
}


def test_a_sweep_killed_after_two_trials_resumes_to_six_and_a_best_config(
    tmp_path, monkeypatch, capsys
):
    pytest.importorskip("optuna")
    pytest.importorskip("matplotlib")
    root = make_project(tmp_path, "swp", sweep=True)
    out = tmp_path / "sweep"
    toml = tmp_path / "sweep.toml"
    with ProjectImport(root, "swp") as p:
        sweep, train_module = p.module("sweep"), p.module("train")
        # mistakes stop before any trial, with one line naming the file and exit 2
        for bad, says in BAD_SWEEPS.items():
            toml.write_text(SWEEP.format(out=str(out)).replace("dropout = {", f"{bad}\n#"))
            capsys.readouterr()
            with pytest.raises(SystemExit) as info:
                sweep.main(["--config", str(toml)])
            err = capsys.readouterr().err
            assert info.value.code == 2 and err.count("\n") == 1, bad
            assert err.startswith(f"error: {toml}: ") and says in err, err
            assert not out.exists()
        toml.write_text(SWEEP.format(out=str(out)))
        # a storage that cannot be opened: one line, exit 1
        with pytest.raises(SystemExit) as info:
            sweep.main(["--config", str(toml), "--storage", "nosuch://db"])
        assert "cannot open the storage nosuch://db" in str(info.value.code)
        monkeypatch.setattr(sweep, "HEARTBEAT", 1)
        monkeypatch.setattr(sweep, "GRACE", 2)
        monkeypatch.setattr(sweep.time, "sleep", lambda s: None)  # the schema retries
        real_save = train_module.save_checkpoint

        def diverge_then_die(path, state, **kwargs):
            if "trial-001" in str(path):
                raise FloatingPointError("the loss became inf or nan at step 3")
            real_save(path, state, **kwargs)
            if "trial-003" in str(path) and path.name == "last.pt" and state["step"] == 4:
                raise SystemExit(137)  # like kill -9: the trial stays RUNNING

        monkeypatch.setattr(train_module, "save_checkpoint", diverge_then_die)
        capsys.readouterr()
        with pytest.raises(SystemExit):
            sweep.main(["--config", str(toml)])
        assert "warning: trial-001 failed: the loss became inf" in capsys.readouterr().err
        storage = f"sqlite:///{out / 'study.db'}"
        assert len(finished_trials(storage)) == 2
        monkeypatch.setattr(train_module, "save_checkpoint", real_save)
        monkeypatch.undo()
        import time

        time.sleep(2.5)  # the killed trial's heartbeat goes stale
        monkeypatch.setattr(sweep, "GRACE", 2)
        sweep.main(["--config", str(toml)])
        Config = p.module("config").Config
        best = p.module("config").load_config(["--config", str(out / "best.toml")])
        folders = sorted(str(f) for f in out.glob("trial-*"))
        p.module("report").main([*folders, "-o", str(tmp_path / "report")])
    assert isinstance(best, Config) and best.out_dir == str(out / "best")
    trials = finished_trials(storage)
    assert len(trials) == 6
    # finished trials ran once; the interrupted one was retried in its own folder and
    # resumed from its checkpoint at step 4; the diverged one failed and did not count
    done = [t.user_attrs["folder"] for t in trials]
    assert len(set(done)) == 6 and "trial-003" in done and "trial-001" not in done
    for folder in ("trial-000", "trial-002"):
        assert json.loads((out / folder / "run.json").read_text())["history"] == []
    history = json.loads((out / "trial-003/run.json").read_text())["history"]
    assert [h["resumed_at"] for h in history] == [4]
    status = {f: json.loads((out / f / "summary.json").read_text())["status"] for f in done}
    assert set(status.values()) <= {"finished", "pruned"}
    assert json.loads((out / "trial-001/summary.json").read_text())["status"] == "failed"
    # the report compares the trials
    text = (tmp_path / "report/report.md").read_text()
    assert all(f"| {f} | {status[f]} |" in text for f in done) and "| lr |" in text


def test_a_trial_beyond_the_total_steps_back_without_training(tmp_path):
    optuna = pytest.importorskip("optuna")
    root = make_project(tmp_path, "swp3", sweep=True)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}")
    study.tell(study.ask(), 1.0)
    study.ask()  # another process's trial, still running: 2 of --trials 2 are taken
    late = study.ask()
    with ProjectImport(root, "swp3") as p:
        value = p.module("sweep").objective(late, {"trials": 2, "out_dir": str(tmp_path)})
    assert value != value and not list(tmp_path.glob("trial-*"))  # NaN: Optuna fails it


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
    # a process waits for the other's running trials rather than start a 7th
    assert len(trials) == 6
    folders = [t.user_attrs["folder"] for t in trials]
    assert len(set(folders)) == len(folders) and (out / "best.toml").exists()


@pytest.mark.slow
def test_a_sweep_killed_with_sigkill_keeps_its_finished_trials_and_resumes_the_third(
    tmp_path,
):
    pytest.importorskip("optuna")
    import sys

    root = make_project(tmp_path, "swk", sweep=True)
    out = tmp_path / "sweep"
    toml = SWEEP.format(out=str(out)).replace("trials = 6", "trials = 3")
    toml = toml.replace("max_steps = 8", "max_steps = 80").replace(
        "save_every = 4", "save_every = 8"
    )
    (root / "sweep.toml").write_text(toml)
    command = [sys.executable, "-m", "swk.sweep", "--config", "sweep.toml"]
    proc = subprocess.Popen(command, cwd=root, stderr=subprocess.DEVNULL)
    third = out / "trial-002/checkpoints/last.pt"
    started = wait_until(third.exists, timeout=300, interval=0.05)
    proc.kill()
    proc.wait()
    assert started
    storage = f"sqlite:///{out / 'study.db'}"
    first = {t.user_attrs["folder"] for t in finished_trials(storage)}
    assert first == {"trial-000", "trial-001"}
    logs = {f: (out / f / "metrics.jsonl").read_bytes() for f in first}
    # 2 finished and 1 dead trial make 3: the restart waits for the dead one's heartbeat
    # to go stale (30 s), then retries it, resuming from its checkpoint
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    trials = finished_trials(storage)
    assert sorted(t.user_attrs["folder"] for t in trials) == [f"trial-00{i}" for i in range(3)]
    for folder, log in logs.items():  # the finished trials did not run again
        assert (out / folder / "metrics.jsonl").read_bytes() == log
    history = json.loads((out / "trial-002/run.json").read_text())["history"]
    assert len(history) == 1 and history[0]["resumed_at"] >= 8
    assert (out / "best.toml").exists()
