"""--fsdp checkpoints: torch.distributed.checkpoint step folders, `latest`, keep-last, async
saves, resharding to another number of ranks, and the faults a cluster throws at them.

The fast tests drive the generated Saver and loaders in this process on a small state; the
slow one trains a tiny gpt under torchrun (3 launches in all) and resumes it on 1 rank
in-process, on 3 ranks, and after a rank was killed during an asynchronous save."""

import copy
import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ProjectImport, make_project

torch = pytest.importorskip("torch")


def step_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("step-*"))


def test_saver_keeps_the_last_k_and_best_and_moves_latest_only_after_an_async_save(
    tmp_path, capsys
):
    root = make_project(tmp_path, "keep", model="gpt", fsdp=True)
    with ProjectImport(root, "keep") as p:
        ck, Config = p.module("checkpoint"), p.module("config").Config
        saver = ck.Saver(tmp_path / "run", Config(keep_last=2, async_save=True))
        folder = tmp_path / "run/checkpoints"
        weights = torch.zeros(64)
        for step in range(1, 6):
            weights.fill_(step)
            state = {"model": {"w": weights}, "step": step, "world": 1}
            saver.save(state, step, best=step == 2)
            # the shards were staged: training may change the weights at once
            weights.fill_(-1.0)
            if step > 1:  # latest names the previous save until this one is waited for
                assert (folder / "latest").read_text() == f"step-{step - 1:06d}\n"
        saver.wait()
        assert (folder / "latest").read_text() == "step-000005\n"
        assert (folder / "best").read_text() == "step-000002\n"
        assert step_names(folder) == ["step-000002", "step-000004", "step-000005"]
        for step in (2, 4, 5):
            saved = ck.load_full(folder / f"step-{step:06d}")
            assert saved["step"] == step and torch.equal(
                saved["model"]["w"], torch.full((64,), float(step))
            )
        assert ck.load_full(folder)["step"] == 5  # the checkpoints folder means latest
        assert ck.load_full(folder / "best")["step"] == 2

        # A truncated shard: one line naming the folder, and the previous one is used.
        newest = folder / "step-000005"
        shard = next(newest.glob("*.distcp"))
        os.truncate(shard, shard.stat().st_size // 2)
        capsys.readouterr()
        assert ck.latest_folder(folder) == folder / "step-000004"
        warning = capsys.readouterr().err.strip()
        assert warning.count("\n") == 0 and str(newest) in warning and "truncated" in warning
        with pytest.raises(ck.CheckpointError, match="step-000005: shard"):
            ck.load_full(newest)
        # A folder whose save never finished (no .metadata), newer than latest, is skipped;
        # with no valid folder left, --resume auto stops instead of starting over.
        (folder / "step-000004/.metadata").unlink()
        (folder / "step-000002/.metadata").unlink()
        with pytest.raises(ck.CheckpointError) as stop:
            ck.latest_folder(folder)
        assert "no readable fallback" in str(stop.value) and "\n" not in str(stop.value)


def test_fsdp_sgd_steps_the_dtensor_shards_like_fused_sgd_and_saves_at_step_0(tmp_path):
    """--fsdp --optimizer sgd: DTensor has no rule for the fused SGD kernel, so the project
    runs it on each rank's shards. On a 1-rank process group (real DTensor parameters) its
    steps equal torch's fused SGD on plain tensors bitwise, a step with found_inf = 1 is
    skipped, and the state saves at step 0 (the first best checkpoint) without a trial
    optimizer step."""
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor

    root = make_project(tmp_path, "fsgd", model="mlp", fsdp=True, optimizer="sgd")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        with ProjectImport(root, "fsgd") as p:
            cfg = p.module("config").Config(lr=0.1, weight_decay=0.1)
            configure = p.module("optim").configure_optimizer
            torch.manual_seed(0)
            plain = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 3))
            sharded = fully_shard(copy.deepcopy(plain))
            optimizer = configure(sharded, cfg, torch.device("cpu"))
            reference = torch.optim.SGD(configure(plain, cfg, torch.device("cpu")).param_groups)
            state = get_optimizer_state_dict(sharded, optimizer)["state"]
            buffers = [s["momentum_buffer"] for s in state.values()]
            assert len(buffers) == 4 and all(isinstance(b, DTensor) for b in buffers)
            assert not any(b.full_tensor().any() for b in buffers)  # no trial step ran
            for step in range(4):
                x, before = torch.randn(5, 4), [t.clone() for t in plain.parameters()]
                for model, opt in ((plain, reference), (sharded, optimizer)):
                    model(x).square().mean().backward()
                    opt.found_inf = torch.tensor(float(step == 2))
                    opt.step()
                    opt.zero_grad()
                for a, b in zip(plain.parameters(), sharded.parameters(), strict=True):
                    assert torch.equal(a, b.full_tensor()), step
                after = plain.parameters()
                moved = {not torch.equal(a, b) for a, b in zip(before, after, strict=True)}
                assert moved == {step != 2}  # all moved, or none on the skipped step
    finally:
        dist.destroy_process_group()


DRIVER = """
import os, signal, sys
sys.path.insert(0, ".")
import dcpp.checkpoint as ck
if os.environ["TORCHELASTIC_RESTART_COUNT"] == "0" and os.environ["RANK"] == "1":
    real = ck.dcp.async_save

    def dying(state, checkpoint_id, **kwargs):
        future = real(state, checkpoint_id=checkpoint_id, **kwargs)
        if checkpoint_id.endswith("step-000008"):  # killed while its shards are written
            os.kill(os.getpid(), signal.SIGKILL)
        return future

    ck.dcp.async_save = dying
from dcpp.train import main
main(sys.argv[1:])
"""


def torchrun(root: Path, nproc: int, *args: str, restarts: int = 0, timeout: int = 300):
    return subprocess.run(
        [
            "torchrun",
            "--standalone",
            f"--nproc-per-node={nproc}",
            f"--max-restarts={restarts}",
            *args,
        ],
        cwd=root,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_fsdp_folders_reshard_to_one_and_three_ranks_and_survive_a_killed_async_save(
    tmp_path, capsys
):
    """A 2-rank FSDP run saved at step 4 continues on 1 process (no torchrun) and on 3
    ranks: the same samples in each optimizer step and parameters allclose to the
    uninterrupted run. A 2-rank run whose rank 1 is killed during the asynchronous save of
    step 8 restarts (torchrun --max-restarts) from step 4 and ends bitwise equal to it."""
    root = make_project(tmp_path, "dcpp", model="gpt", fsdp=True)
    sizes = dict(corpus_chars=4000, d_model=24, d_ff=48, n_layers=2, seq_len=16, dropout=0.0)
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in sizes.items()]
    common = [*flags, "--max-steps=12", "--save-every=4", "--eval-every=4", "--device=cpu"]
    ref = torchrun(
        root,
        2,
        "-m",
        "dcpp.train",
        *common,
        "--batch-size=6",
        "--keep-last=0",
        "--out-dir=runs/two",
    )
    assert ref.returncode == 0, ref.stderr[-3000:]
    reference = root / "runs/two/checkpoints"
    # not step 0: nothing is trained there, so it is no best checkpoint
    assert step_names(reference) == [f"step-{s:06d}" for s in (4, 8, 12)]
    assert sorted(p.name for p in (reference / "step-000004").glob("*.distcp")) == [
        "__0_0.distcp",
        "__1_0.distcp",
    ]

    def cut_at_step_4(name):  # as if the job had died right after the step-4 save
        shutil.copytree(root / "runs/two", root / f"runs/{name}")
        ckpt = root / f"runs/{name}/checkpoints"
        for later in ("step-000008", "step-000012"):
            shutil.rmtree(ckpt / later)
        (ckpt / "latest").write_text("step-000004\n")

    cut_at_step_4("three")
    three = torchrun(
        root,
        3,
        "-m",
        "dcpp.train",
        *common,
        "--batch-size=4",
        "--out-dir=runs/three",
        "--resume=auto",
    )
    assert three.returncode == 0, three.stderr[-3000:]
    assert "on 3 ranks, saved on 2" in three.stderr

    (root / "driver.py").write_text(DRIVER)
    killed = torchrun(
        root,
        2,
        "driver.py",
        *common,
        "--batch-size=6",
        "--async-save",
        "--resume=auto",
        "--out-dir=runs/killed",
        restarts=1,
    )
    assert killed.returncode == 0, killed.stderr[-3000:]
    assert "resumed from step 4" in killed.stderr
    killed_dir = root / "runs/killed/checkpoints"
    assert step_names(killed_dir) == ["step-000008", "step-000012"]  # --keep-last 2

    cut_at_step_4("one")
    with ProjectImport(root, "dcpp") as p:
        ck, Config = p.module("checkpoint"), p.module("config").Config
        cfg = Config(**sizes, max_steps=12, save_every=4, eval_every=4, device="cpu")
        p.module("train").train(
            dataclasses.replace(cfg, out_dir=str(root / "runs/one"), resume="auto")
        )
        full = ck.load_full(reference)
        for name, exact in (("one", False), ("three", False), ("killed", True)):
            resumed = ck.load_full(root / f"runs/{name}/checkpoints")
            assert resumed["step"] == 12 and resumed["consumed"] == full["consumed"], name
            assert resumed["world"] == {"one": 1, "three": 3, "killed": 2}[name]
            for key, value in full["model"].items():
                if exact:
                    assert torch.equal(resumed["model"][key], value), f"{name}: {key}"
                else:
                    torch.testing.assert_close(
                        resumed["model"][key], value, rtol=1e-4, atol=1e-6, msg=f"{name}: {key}"
                    )

        # One process, no torchrun: predict, sample and export read the sharded folder.
        model, cfg2, meta = ck.load_trained(str(reference / "latest"))
        reference_model = p.module("model").build_model(cfg2)
        reference_model.load_state_dict(full["model"])
        pytest.importorskip("safetensors")
        p.module("export").main([str(reference), "-o", str(tmp_path / "export")])
        exported, _, _ = ck.load_trained(str(tmp_path / "export"))
        capsys.readouterr()
        sample = p.module("sample")
        sample.main(["--checkpoint", str(reference), "--prompt", "a", "--max-new-tokens", "5"])
        out = capsys.readouterr().out
        assert out.startswith("a") and len(out) == 7, out
        x = torch.randint(0, cfg2.vocab_size, (2, 8))
        for m in (model, reference_model, exported):
            m.eval()
        with torch.no_grad():
            assert torch.equal(model(x), reference_model(x))
            assert torch.equal(exported(x), reference_model(x))
