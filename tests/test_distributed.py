"""--ddp and --fsdp on real engines: torchrun with gloo on CPU. Each launch costs seconds,
so these tests are few, marked slow, and part of the full run."""

import dataclasses
import json
import math
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ProjectImport, make_project, wait_until

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow

TINY = [
    "--d-model",
    "32",
    "--d-ff",
    "64",
    "--n-layers",
    "1",
    "--seq-len",
    "16",
    "--num-samples",
    "512",
    "--dropout",
    "0",
    "--device",
    "cpu",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(**extra) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", **{k: str(v) for k, v in extra.items()}}


def torchrun(root: Path, *args: str, launcher="scripts/train_ddp.sh", timeout=240, **extra):
    return subprocess.run(
        ["bash", launcher, *args],
        cwd=root,
        env=env(**extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def load(path: Path) -> dict:
    return torch.load(path, weights_only=True)


DRIVER = """
import sys, torch, torch.distributed as dist
sys.path.insert(0, ".")
import {pkg}.train as t
from {pkg}.config import Config
models = []
build = t.build_model
t.build_model = lambda cfg: models.append(build(cfg)) or models[-1]
t.train(Config(out_dir="runs/ddp", max_steps=12, batch_size=16, eval_every=6, num_samples=512,
               d_model=32, d_ff=64, n_layers=1, seq_len=16, dropout=0.0, device="cpu"))
flat = torch.cat([p.detach().flatten() for p in models[0].parameters()])
everyone = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
dist.all_gather(everyone, flat)
assert all(torch.equal(everyone[0], other) for other in everyone), "ranks differ"
print("ranks identical", flush=True)
# as the generated main does: end on a barrier (no tensors held by gloo's threads), free
# the models, then destroy the group
dist.barrier()
import gc; models.clear(); gc.collect()
dist.destroy_process_group()
"""


def test_ddp_ranks_agree_and_equal_single_process_training(tmp_path):
    # SGD, not Adam: Adam divides by the gradient's size, so on a parameter whose true
    # gradient is zero (the key bias) it would turn float noise into full-size steps.
    root = make_project(tmp_path, "ddpeq", model="transformer", optimizer="sgd", ddp=True)
    (root / "driver.py").write_text(DRIVER.format(pkg="ddpeq"))
    result = subprocess.run(
        ["torchrun", "--standalone", "--nproc-per-node=2", "driver.py"],
        cwd=root,
        env=env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("ranks identical") == 2
    # The same global batch (2 ranks x 16) in one process: the same training, up to float
    # rounding in how the gradient mean is summed.
    sys.path.insert(0, str(root))
    try:
        from ddpeq.config import Config
        from ddpeq.train import train

        train(
            Config(
                out_dir=str(root / "runs/single"),
                max_steps=12,
                batch_size=32,
                eval_every=6,
                num_samples=512,
                d_model=32,
                d_ff=64,
                n_layers=1,
                seq_len=16,
                dropout=0.0,
                device="cpu",
            )
        )
    finally:
        sys.path.remove(str(root))
        for m in [m for m in sys.modules if m.startswith("ddpeq")]:
            del sys.modules[m]
    ddp_ckpt = load(root / "runs/ddp/checkpoints/last.pt")
    # Identical weights, but each rank its own random stream (dropout masks differ).
    first, second = (state["torch"] for state in ddp_ckpt["rng"])
    assert not torch.equal(first, second)
    ddp = ddp_ckpt["model"]
    single = load(root / "runs/single/checkpoints/last.pt")["model"]
    for key in single:
        torch.testing.assert_close(ddp[key], single[key], rtol=1e-4, atol=1e-5, msg=key)
    # The validation metrics too: 51 examples over 2 ranks, so the sampler pads one, and
    # that repeat must not be counted.
    val = {
        run: [
            e
            for e in map(json.loads, (root / f"runs/{run}/metrics.jsonl").open())
            if e["split"] == "val"
        ]
        for run in ("ddp", "single")
    }
    assert [e["step"] for e in val["ddp"]] == [e["step"] for e in val["single"]] == [0, 6, 12]
    for a, b in zip(val["ddp"], val["single"], strict=True):
        assert a["accuracy"] == b["accuracy"]
        assert math.isclose(a["loss"], b["loss"], rel_tol=1e-5), (a, b)


def test_fsdp_trains_and_its_checkpoint_loads_in_one_process(tmp_path):
    root = make_project(
        tmp_path,
        "fsdpproj",
        model="gpt",
        fsdp=True,
        amp=True,
        grad_checkpointing=True,
        optimizer="sgd",
    )
    result = torchrun(
        root,
        "--max-steps",
        "20",
        "--eval-every",
        "10",
        "--out-dir",
        "runs/f",
        "--corpus-chars",
        "4000",
        *TINY[:8],
        "--device",
        "cpu",
        NPROC_PER_NODE=2,
        MAX_RESTARTS=0,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = (root / "runs/f/metrics.jsonl").read_text().splitlines()
    assert '"step": 20' in lines[-1]
    sample = subprocess.run(
        [
            sys.executable,
            "-m",
            "fsdpproj.sample",
            "--checkpoint",
            "runs/f/checkpoints",  # the step folder that latest names
            "--prompt",
            "a",
            "--max-new-tokens",
            "10",
        ],
        cwd=root,
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sample.returncode == 0 and len(sample.stdout.strip()) == 11, sample.stderr


def test_two_nodes_on_loopback(tmp_path):
    root = make_project(tmp_path, "twonode", model="mlp", ddp=True)
    endpoint = f"127.0.0.1:{free_port()}"
    nodes = [
        subprocess.Popen(
            [
                "bash",
                "scripts/train_multinode.sh",
                "--max-steps",
                "10",
                "--out-dir",
                "runs/mn",
                "--device",
                "cpu",
                "--num-samples",
                "512",
            ],
            cwd=root,
            env=env(
                NNODES=2,
                NPROC_PER_NODE=1,
                RDZV_ENDPOINT=endpoint,
                RDZV_ID="twonode-test",
                MAX_RESTARTS=0,
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [node.communicate(timeout=240) for node in nodes]
    assert [n.returncode for n in nodes] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    assert load(root / "runs/mn/checkpoints/last.pt")["step"] == 10


def worker_pids(agent: int) -> list[int]:
    children = Path(f"/proc/{agent}/task/{agent}/children").read_text().split()
    return [int(c) for c in children]


def test_killed_worker_restarts_and_resumes_exactly(tmp_path):
    root = make_project(tmp_path, "elastic", model="mlp", ddp=True)
    args = [
        "--max-steps",
        "150",
        "--save-every",
        "20",
        "--eval-every",
        "50",
        "--device",
        "cpu",
        "--num-samples",
        "2048",
        "--batch-size",
        "32",
    ]
    full = torchrun(root, *args, "--out-dir", "runs/full", NPROC_PER_NODE=2, MAX_RESTARTS=0)
    assert full.returncode == 0, full.stderr[-3000:]

    agent = subprocess.Popen(
        [
            "torchrun",
            "--standalone",
            "--nproc-per-node=2",
            "--max-restarts=1",
            "-m",
            "elastic.train",
            "--resume",
            "auto",
            *args,
            "--out-dir",
            "runs/cut",
        ],
        cwd=root,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    last = root / "runs/cut/checkpoints/last.pt"
    assert wait_until(last.exists, 120), "no checkpoint before the kill"
    killed_at = load(last)["step"]
    os.kill(worker_pids(agent.pid)[-1], signal.SIGKILL)
    _, err = agent.communicate(timeout=300)
    assert agent.returncode == 0, err[-3000:]
    assert killed_at < 150 and "resumed from step" in err
    a, b = load(root / "runs/full/checkpoints/last.pt"), load(last)
    assert a["step"] == b["step"] == 150
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_sigterm_under_torchrun_saves_and_exits(tmp_path):
    root = make_project(tmp_path, "preempt", model="mlp", ddp=True)
    agent = subprocess.Popen(
        [
            "torchrun",
            "--standalone",
            "--nproc-per-node=2",
            "-m",
            "preempt.train",
            "--max-steps",
            "100000",
            "--save-every",
            "100000",
            "--device",
            "cpu",
            "--out-dir",
            "runs/p",
        ],
        cwd=root,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = root / "runs/p/metrics.jsonl"
    wait_until(lambda: log.exists() and log.read_text().count("\n") > 3, 120)
    agent.send_signal(signal.SIGTERM)
    _, err = agent.communicate(timeout=120)
    assert agent.returncode != 0  # torchrun reports the preemption
    assert load(root / "runs/p/checkpoints/last.pt")["step"] > 0, err[-2000:]


def test_slurm_script_runs_the_right_commands(tmp_path):
    root = make_project(tmp_path, "slurmy", model="gpt", ddp=True)
    script = root / "scripts/slurm.sbatch"
    subprocess.run(["bash", "-n", str(script)], check=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text("#!/bin/sh\nprintf 'node7\\nnode8\\n'\n")
    (bin_dir / "srun").write_text('#!/bin/sh\necho "srun $*"\n')
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    result = subprocess.run(
        ["bash", str(script), "--max-steps", "5"],
        cwd=root,
        capture_output=True,
        text=True,
        env=env(
            PATH=f"{bin_dir}:{os.environ['PATH']}",
            SLURM_JOB_NODELIST="node[7-8]",
            SLURM_JOB_NUM_NODES=2,
            SLURM_JOB_ID=4242,
            SLURM_GPUS_ON_NODE=4,
        ),
    )
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    for part in [
        "srun torchrun",
        "--nnodes=2",
        "--nproc-per-node=4",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=node7:29500",
        "--rdzv-id=4242",
        "-m slurmy.train",
        "--resume auto --max-steps 5",
    ]:
        assert part in line, (part, line)


def test_slurm_warning_stops_every_task_and_requeues(tmp_path):
    """The time-limit warning (USR1 to the batch shell) reaches the tasks as SIGTERM, the
    script waits for them to save, then requeues the job; a fake srun and scontrol stand in
    for Slurm."""
    root = make_project(tmp_path, "preempt", model="mlp", ddp=True)
    script = root / "scripts/slurm.sbatch"
    assert "#SBATCH --requeue" in script.read_text()
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(
        f'#!/bin/sh\necho "scontrol $*" >> {log}\n'
        "[ \"$1\" = show ] && printf 'node7\\n'\nexit 0\n"
    )
    # A task that, like torchrun's ranks, saves and exits 143 on SIGTERM.
    (bin_dir / "srun").write_text(
        "#!/usr/bin/env bash\n"
        f"trap 'echo \"task got TERM\" >> {log}; sleep 0.2; echo saved >> {log}; exit 143' TERM\n"
        f'echo "srun started" >> {log}\n'
        "while true; do sleep 0.05; done\n"
    )
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    job = subprocess.Popen(
        ["bash", str(script)],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(
            PATH=f"{bin_dir}:{os.environ['PATH']}",
            SLURM_JOB_NODELIST="node7",
            SLURM_JOB_NUM_NODES=1,
            SLURM_JOB_ID=4242,
        ),
    )
    assert wait_until(lambda: log.exists() and "srun started" in log.read_text(), 10)
    job.send_signal(signal.SIGUSR1)
    _, err = job.communicate(timeout=30)
    calls = log.read_text().splitlines()
    assert job.returncode == 0, err
    assert (
        calls.index("task got TERM") < calls.index("saved") < calls.index("scontrol requeue 4242")
    )


HOST_READS_DRIVER = """
import json, sys
from pathlib import Path
sys.path.insert(0, "."); sys.path.insert(0, {tests!r})
import torch.distributed as dist
from conftest import HostReads
import {pkg}.metrics as metrics, {pkg}.train as t
from {pkg}.config import Config
counter = HostReads(str(Path("{pkg}/data.py").resolve()))
real_step = metrics.MetricsLog.step
def step(self):
    real_step(self)
    counter.step += 1
metrics.MetricsLog.step = step
with counter:
    t.train(Config(out_dir="runs/reads", max_steps=8, log_every=8, eval_every=8,
                   save_every=8, precision="fp16", grad_accum_steps=2, num_samples=512,
                   d_model=32, d_ff=64, n_layers=1, seq_len=16, device="cpu"))
print(json.dumps({{"rank": dist.get_rank(), "reads": counter.reads}}), flush=True)
import gc; gc.collect()
dist.destroy_process_group()
"""


def test_two_ddp_ranks_read_nothing_from_the_device_between_events(tmp_path):
    """transformer + fp16 + DDP on 2 processes, with accumulation: the ranks agree to stop
    and check for NaN only at events, so the steps in between hold no host read."""
    root = make_project(tmp_path, "quiet", model="transformer", amp=True, ddp=True)
    tests = str(Path(__file__).resolve().parent)
    (root / "driver.py").write_text(HOST_READS_DRIVER.format(pkg="quiet", tests=tests))
    result = subprocess.run(
        ["torchrun", "--standalone", "--nproc-per-node=2", "driver.py"],
        cwd=root,
        env=env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # Two ranks print to one pipe: their lines may run together, so read every object.
    text, reports, decoder = result.stdout, [], json.JSONDecoder()
    for start in [i for i, c in enumerate(text) if text.startswith('{"rank"', i)]:
        reports.append(decoder.raw_decode(text, start)[0])
    assert sorted(r["rank"] for r in reports) == [0, 1]
    for report in reports:
        reads = {int(step): n for step, n in report["reads"].items()}
        assert not any(reads.get(s, 0) for s in range(1, 8)), report
        assert reads.get(8, 0) > 0  # the events at the end do read


def test_a_two_rank_run_resumes_on_one_process_and_on_four(tmp_path):
    """A DDP run saved at step 4 on 2 ranks continues on 1 process and on 4: the same
    global batch, so the same samples in the same optimizer steps, and parameters equal to
    float tolerance (bitwise is impossible: the reductions run in another order)."""
    import shutil

    # SGD, not Adam: on parameters whose true gradient is ~0, Adam scales float noise up.
    root = make_project(tmp_path, "elastic", model="transformer", optimizer="sgd", ddp=True)
    sizes = dict(num_samples=512, d_model=32, d_ff=64, n_layers=1, seq_len=16, dropout=0.0)
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in sizes.items()]
    common = [*flags, "--max-steps=8", "--save-every=4", "--eval-every=4", "--device=cpu"]
    result = torchrun(root, *common, "--batch-size=8", "--out-dir=runs/two")
    assert result.returncode == 0, result.stderr[-2000:]

    def cut_at_step_4(name):  # as if the job had died right after the step-4 save
        shutil.copytree(root / "runs/two", root / f"runs/{name}")
        ckpt = root / f"runs/{name}/checkpoints"
        (ckpt / "last.prev.pt").replace(ckpt / "last.pt")

    cut_at_step_4("one")
    with ProjectImport(root, "elastic") as p:
        cfg = p.module("config").Config(
            **sizes, max_steps=8, save_every=4, eval_every=4, device="cpu", batch_size=8
        )
        p.module("train").train(
            dataclasses.replace(cfg, out_dir=str(root / "runs/one"), resume="auto")
        )
    cut_at_step_4("four")
    refused = torchrun(root, *common, "--batch-size=8", "--out-dir=runs/four", NPROC_PER_NODE=4)
    assert refused.returncode != 0 and "--new-global-batch" in refused.stderr
    result = torchrun(root, *common, "--batch-size=4", "--out-dir=runs/four", NPROC_PER_NODE=4)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "on 4 ranks, saved on 2" in result.stderr

    reference = load(root / "runs/two/checkpoints/last.pt")
    for name in ("one", "four"):
        resumed = load(root / f"runs/{name}/checkpoints/last.pt")
        assert resumed["step"] == 8 and resumed["consumed"] == reference["consumed"]
        for key, value in reference["model"].items():
            torch.testing.assert_close(
                resumed["model"][key], value, rtol=1e-4, atol=1e-6, msg=f"{name}: {key}"
            )
