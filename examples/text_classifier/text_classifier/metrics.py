"""metrics.jsonl, TensorBoard, the progress display, and telemetry: time per step,
throughput, memory and MFU.
"""

import json
import sys
import time
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from text_classifier.config import Config

# Measured, not computed: these differ from run to run, everything else in an event is
# exact.
TIMING = ("step_time", "samples_per_s", "tokens_per_s", "mfu", "max_memory")


class MetricsLog:
    """One JSON object per line. On resume, events after the checkpoint's step are
    dropped, so every step appears once.
    """

    def __init__(self, path: Path, resume_step: int | None, total_steps: int, run):
        self.path, self.run, self.total = path, run, total_steps
        self.enabled = run is not None  # only rank 0 writes
        if not self.enabled:
            return
        kept = []
        if resume_step is not None and path.exists():
            kept = [e for e in read_events(path) if e["step"] <= resume_step]
        path.write_text("".join(json.dumps(e) + "\n" for e in kept))
        # The summary of a resumed run starts from the events it keeps, so best and last
        # agree with metrics.jsonl.
        for event in kept:
            run.event(event)
        # A progress bar on a terminal; one line per event otherwise, as a batch job's
        # log wants.
        self.lines = not sys.stderr.isatty()
        self.bar = tqdm(
            total=total_steps,
            initial=resume_step or 0,
            desc="train",
            disable=self.lines,
        )

    def step(self) -> None:
        if self.enabled:
            self.bar.update()

    def write(self, split: str, step: int, epoch: int, **values) -> None:
        if not self.enabled:
            return
        event = {"step": step, "epoch": epoch, "split": split, **values}
        with self.path.open("a") as f:
            f.write(json.dumps(event) + "\n")
        self.run.event(event)
        if split == "val":
            self.run.write(step)
        text = " ".join(f"{k}={v:.4g}" for k, v in values.items())
        if self.lines:
            line = "{split} step {step}: {values}"
            print(line.format(split=split, step=step, values=text), file=sys.stderr)
        elif split == "train":
            self.bar.set_postfix_str(text)

    def close(self, step: int) -> None:
        if self.enabled:
            self.bar.close()
            self.run.write(step, "finished" if step >= self.total else "stopped")


def read_events(path: Path) -> list[dict]:
    """The events of a metrics.jsonl; a line torn by a crash, or otherwise damaged,
    is dropped with a note.
    """
    events = []
    # Bytes that are not UTF-8 spoil only their own line.
    text = path.read_bytes().decode(errors="replace")
    for number, line in enumerate(text.splitlines(), 1):
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            event = None
        if is_event(event):
            events.append(event)
        else:
            note = "note: {path}:{line} is a torn or damaged line; dropped"
            print(note.format(path=path, line=number), file=sys.stderr)
    return events


def is_event(event: object) -> bool:
    """A line the run can go on from: a JSON object with an integer step, and a loss
    for a validation event. A crash tears the last line; a disk error or an editor
    can damage any.
    """
    if not isinstance(event, dict) or type(event.get("step")) is not int:
        return False
    split, loss = event.get("split"), event.get("loss")
    return split == "train" or split == "val" and isinstance(loss, (int, float))


# Dense peak FLOP/s per GPU: (bf16 or fp16, TF32), from the vendors' data sheets.
PEAK_FLOPS = {
    "B200": (2250e12, 1100e12),
    "H200": (989e12, 495e12),
    "H100 PCIe": (756e12, 378e12),
    "H100": (989e12, 495e12),
    "A100": (312e12, 156e12),
    "L40S": (362e12, 183e12),
    "L4": (121e12, 60e12),
    "V100": (125e12, 15.7e12),
    "MI300X": (1307e12, 654e12),
}


def flops_per_sample(model: nn.Module, cfg: Config) -> float:
    """Training FLOPs per sample: 6 per weight use (2 forward, 4 backward)."""
    n = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    # 6N per token plus attention's 12 * layers * d_model * seq_len (PaLM, appendix B).
    attention = 12 * cfg.n_layers * cfg.d_model * cfg.seq_len
    return cfg.seq_len * (6 * n + attention)


class Telemetry:
    """Time per optimizer step, samples (and tokens) per second, peak memory and
    model FLOPs utilization.
    """

    def __init__(
        self, cfg: Config, model: nn.Module, device, dtype, world: int, step: int
    ):
        self.samples = cfg.batch_size * cfg.grad_accum_steps * world
        self.tokens = self.samples * cfg.seq_len
        self.cuda, self.world = device.type == "cuda", world
        self.peak = None
        if self.cuda:
            name = torch.cuda.get_device_name(device)
            found = [v for k, v in PEAK_FLOPS.items() if k in name]
            low_precision = dtype in (torch.bfloat16, torch.float16)
            self.peak = found[0][0 if low_precision else 1] if found else None
        self.flops = flops_per_sample(model, cfg)
        self.restart(step)

    def restart(self, step: int) -> None:
        """Start a new measuring window at this step."""
        self.time, self.step = time.perf_counter(), step

    def measure(self, step: int) -> dict:
        """Averages since the last measurement; call it right after a host read, when
        the device has caught up.
        """
        now = time.perf_counter()
        step_time = (now - self.time) / max(1, step - self.step)
        self.restart(step)
        out = {"step_time": step_time, "samples_per_s": self.samples / step_time}
        out["tokens_per_s"] = self.tokens / step_time
        if self.cuda:
            out["max_memory"] = torch.cuda.max_memory_allocated()
        if self.peak:
            # model FLOPs utilization: achieved FLOP/s over the GPU's peak
            out["mfu"] = self.flops * out["samples_per_s"] / (self.peak * self.world)
        return out
