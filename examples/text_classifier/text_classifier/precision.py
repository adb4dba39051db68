"""Mixed precision: the autocast dtype, the fp16 GradScaler, and its state in
checkpoints.
"""

import sys

import torch


def amp_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The autocast dtype: auto picks bf16 on CUDA GPUs that have it, else fp16; fp32
    (off) on CPU.
    """
    if precision == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    return dtypes[precision]


class Precision:
    """One object for the precision of a run: autocast for the forward pass, a
    GradScaler for fp16.
    """

    def __init__(self, precision: str, device: torch.device):
        self.device_type, self.dtype = device.type, amp_dtype(precision, device)
        self.use_autocast = self.dtype != torch.float32
        # GradScaler only for fp16: bf16 has fp32's exponent range, so its gradients do
        # not underflow.
        self.scaler = torch.amp.GradScaler(
            device.type, enabled=self.dtype == torch.float16
        )

    def autocast(self):
        return torch.autocast(
            self.device_type, dtype=self.dtype, enabled=self.use_autocast
        )

    def state_dict(self) -> dict:
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if self.scaler.is_enabled() and not state:
            # Resuming at fp16 from a bf16 or fp32 checkpoint: there is no scale to
            # restore.
            note = "note: fp16 resumes with a fresh GradScaler (none in the checkpoint)"
            print(note, file=sys.stderr)
            return
        self.scaler.load_state_dict(state)
