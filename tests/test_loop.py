"""The generated training loop's fixes from the review of issue #11, each run in-process."""

import json

import pytest
from conftest import ProjectImport, make_project

torch = pytest.importorskip("torch")

TINY = dict(device="cpu", num_samples=256, log_every=2, eval_every=4, save_every=4)


def test_onecycle_leaves_adams_beta1_alone(tmp_path):
    root = make_project(tmp_path, "cyc", scheduler="onecycle")
    with ProjectImport(root, "cyc") as p:
        cfg = p.module("config").Config(**TINY)
        model = torch.nn.Linear(4, 2)
        optimizer = p.module("optim").configure_optimizer(model, cfg, torch.device("cpu"))
        scheduler = p.module("optim").build_scheduler(optimizer, cfg, 20)
        betas = set()
        for _ in range(20):
            optimizer.step()
            scheduler.step()
            betas.add(optimizer.param_groups[0]["betas"][0])
    assert betas == {cfg.betas[0]}


def test_resuming_bf16_at_fp16_starts_a_fresh_scaler(tmp_path, capsys):
    root = make_project(tmp_path, "prec", amp=True)
    with ProjectImport(root, "prec") as p:
        Config, train = p.module("config").Config, p.module("train").train
        out = str(tmp_path / "run")
        train(Config(**TINY, out_dir=out, max_steps=4, precision="bf16"))
        train(Config(**TINY, out_dir=out, max_steps=8, precision="fp16", resume="auto"))
        ckpt = p.module("checkpoint").load_checkpoint(tmp_path / "run/checkpoints/last.pt")
    assert ckpt["step"] == 8 and "scale" in ckpt["scaler"]
    assert "fresh" in capsys.readouterr().err


def test_ema_picks_best_and_is_what_predict_loads(tmp_path):
    root = make_project(tmp_path, "avg", ema=True)
    with ProjectImport(root, "avg") as p:
        Config, train = p.module("config").Config, p.module("train").train
        train(Config(**TINY, out_dir=str(tmp_path / "run"), max_steps=8))
        ckpt_mod = p.module("checkpoint")
        best = ckpt_mod.load_checkpoint(tmp_path / "run/checkpoints/best.pt")
        weights = ckpt_mod.model_weights(best)
        raw = ckpt_mod.model_weights(best, raw=True)
    lines = (tmp_path / "run/metrics.jsonl").read_text().splitlines()
    val = [e for e in map(json.loads, lines) if e["split"] == "val"]
    assert best["best_val_loss"] == min(e["ema_loss"] for e in val)
    key = next(iter(raw))
    assert torch.equal(weights[key], best["ema"]["module." + key])
    assert not torch.equal(weights[key], raw[key])


def test_a_rerun_into_a_used_out_dir_is_refused_and_damage_never_restarts(tmp_path):
    root = make_project(tmp_path, "keep")
    with ProjectImport(root, "keep") as p:
        Config, train = p.module("config").Config, p.module("train").train
        errors = p.module("config").ConfigError, p.module("checkpoint").CheckpointError
        out = tmp_path / "run"
        train(Config(**TINY, out_dir=str(out), max_steps=4))
        before = (out / "metrics.jsonl").read_text()
        with pytest.raises(errors[0], match="--resume auto"):
            train(Config(**TINY, out_dir=str(out), max_steps=4))
        (out / "checkpoints/last.pt").write_bytes(b"torn")
        (out / "checkpoints/last.prev.pt").unlink(missing_ok=True)
        with pytest.raises(errors[1], match="nothing was changed"):
            train(Config(**TINY, out_dir=str(out), max_steps=8, resume="auto"))
    assert (out / "metrics.jsonl").read_text() == before


def test_overwrite_starts_over_without_the_old_runs_checkpoints(tmp_path):
    root = make_project(tmp_path, "anew")
    with ProjectImport(root, "anew") as p:
        Config, train = p.module("config").Config, p.module("train").train
        out = tmp_path / "run"
        train(Config(**{**TINY, "save_every": 3}, out_dir=str(out), max_steps=6))
        train(Config(**TINY, out_dir=str(out), max_steps=4, overwrite=True))
        load = p.module("checkpoint").load_checkpoint
        assert load(out / "checkpoints/last.pt")["step"] == 4
    # the old run's last.pt must not become this run's fallback
    assert not (out / "checkpoints/last.prev.pt").exists()


def test_step_time_after_a_resume_counts_only_the_steps_since_it(tmp_path):
    root = make_project(tmp_path, "tele")
    with ProjectImport(root, "tele") as p:
        cfg = p.module("config").Config(**TINY)
        model = p.module("model").build_model(cfg)
        telemetry = p.module("metrics").Telemetry(
            cfg, model, torch.device("cpu"), torch.float32, 1, 10
        )
        telemetry.time -= 2.0  # two seconds since the resume at step 10
        assert telemetry.measure(12)["step_time"] == pytest.approx(1.0, rel=0.05)


def test_a_fresh_run_leaves_checkpoints_it_did_not_write_alone(tmp_path):
    root = make_project(tmp_path, "stray")
    kept = tmp_path / "run/checkpoints/pretrained.pt"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"the user's file")
    with ProjectImport(root, "stray") as p:
        p.module("train").train(
            p.module("config").Config(**TINY, out_dir=str(tmp_path / "run"), max_steps=2)
        )
    assert kept.read_bytes() == b"the user's file"


def test_a_checkpoint_of_another_model_config_is_one_unwrapped_line(tmp_path):
    root = make_project(tmp_path, "other")
    with ProjectImport(root, "other") as p:
        Config, train = p.module("config").Config, p.module("train").train
        out = str(tmp_path / "run")
        train(Config(**TINY, out_dir=out, max_steps=2))
        error = p.module("checkpoint").CheckpointError
        with pytest.raises(error) as info:
            train(Config(**TINY, out_dir=out, max_steps=4, resume="auto", hidden_dims=[8]))
    message = str(info.value)
    assert "different model config" in message and "does not fit" not in message


def test_validation_loss_under_bf16_is_computed_in_fp32(tmp_path):
    """The logits come out of autocast in bf16; the loss that picks best.pt must not be
    rounded to bf16 as well."""
    root = make_project(tmp_path, "half", amp=True)
    with ProjectImport(root, "half") as p:
        cfg = p.module("config").Config(**TINY, precision="bf16")
        train = p.module("train")
        data = p.module("data").build_datasets(cfg)
        cfg = p.module("config").Config(**{**TINY, **data.sizes}, precision="bf16")
        model = p.module("model").build_model(cfg)
        cpu = torch.device("cpu")
        precision = p.module("precision").Precision("bf16", cpu)
        loader = torch.utils.data.DataLoader(data.val, batch_size=cfg.batch_size)
        got = train.evaluate(model, loader, cfg, cpu, precision)["loss"]
        total = n = 0
        model.eval()  # as evaluate() runs it: no dropout
        with torch.no_grad():
            for x, y in loader:
                with precision.autocast():
                    logits = model(x)
                total += train.loss_fn(cfg, logits.float(), y).double() * len(y)
                n += len(y)
    assert got == pytest.approx((total / n).item(), rel=1e-6)


def test_every_world_size_sees_the_same_samples_in_each_optimizer_step(tmp_path):
    """GlobalBatches cuts one order per (seed, epoch): with the global batch fixed at 16,
    1, 2 or 4 ranks (and the accumulation that keeps 16) train on the same samples in each
    optimizer step, and a resume may start at any sample."""
    root = make_project(tmp_path, "order")
    with ProjectImport(root, "order") as p:
        Config, GlobalBatches = p.module("config").Config, p.module("data").GlobalBatches
        steps = {}
        for world, batch in ((1, 4), (2, 4), (4, 2), (4, 4)):
            cfg = Config(batch_size=batch, grad_accum_steps=16 // (batch * world), seed=3)
            per_rank = [list(GlobalBatches(100, cfg, rank, world)) for rank in range(world)]
            accum = cfg.grad_accum_steps
            steps[world, batch] = [
                sorted(i for r in per_rank for m in r[s * accum : (s + 1) * accum] for i in m)
                for s in range(len(per_rank[0]) // accum)
            ]
        assert len(set(map(str, steps.values()))) == 1 and len(steps[1, 4]) == 6
        resumed = GlobalBatches(100, Config(batch_size=4, grad_accum_steps=4, seed=3), 0, 1)
        resumed.set_position(0, 32)  # after two optimizer steps of 16
        rest = sorted(i for step in steps[1, 4][2:] for i in step)
        assert sorted(i for m in resumed for i in m) == rest


@pytest.mark.parametrize("options", [{"model": "gpt", "ema": True}, {"model": "cnn"}])
def test_export_reproduces_the_checkpoint_models_outputs_exactly(tmp_path, options):
    pytest.importorskip("safetensors")
    root = make_project(tmp_path, "exp", **options)
    small = dict(TINY)
    if options["model"] == "gpt":
        del small["num_samples"]
        small.update(corpus_chars=3000, d_model=32, d_ff=64, n_layers=1, seq_len=16)
    with ProjectImport(root, "exp") as p:
        Config, train = p.module("config").Config, p.module("train").train
        out = tmp_path / "run"
        train(Config(**small, out_dir=str(out), max_steps=4))
        export = p.module("export")
        export.main([str(out / "checkpoints/last.pt"), "-o", str(tmp_path / "export")])
        # predict and sample load an export folder as they load a checkpoint
        model, cfg, meta = p.module("checkpoint").load_trained(str(tmp_path / "export"))
        ckpt = p.module("checkpoint").load_checkpoint(out / "checkpoints/last.pt")
        reference = p.module("model").build_model(cfg)
        if options.get("ema"):  # the EMA weights are exported by default
            reference.load_state_dict(p.module("checkpoint").model_weights(ckpt))
        else:
            reference.load_state_dict(ckpt["model"])
        x = torch.stack([p.module("data").build_datasets(cfg).val[i][0] for i in range(3)])
        model.eval()
        reference.eval()
        with torch.no_grad():
            assert torch.equal(model(x), reference(x))
    assert meta == ckpt["data"] and cfg.__dict__ == ckpt["config"]


def test_a_resume_at_or_past_max_steps_stops_at_once(tmp_path, capsys):
    """A run resumed with a --max-steps at or below its step trains nothing (it used to
    run on without end) and says so in one line; the run folder is left as it was."""
    root = make_project(tmp_path, "past")
    with ProjectImport(root, "past") as p:
        out = tmp_path / "run"
        argv = ["--device", "cpu", "--num-samples", "64", "--batch-size", "8"]
        argv += ["--out-dir", str(out)]
        p.module("train").main(argv + ["--max-steps", "4"])
        before = (out / "metrics.jsonl").read_text()
        capsys.readouterr()
        for steps in ("4", "2"):
            p.module("train").main(argv + ["--max-steps", steps, "--resume", "auto"])
            said = capsys.readouterr().out
            assert "nothing to train" in said and "--max-steps" in said, said
        ckpt = p.module("checkpoint").load_checkpoint(out / "checkpoints/last.pt")
    assert ckpt["step"] == 4 and (out / "metrics.jsonl").read_text() == before
    assert json.loads((out / "summary.json").read_text())["status"] == "finished"
