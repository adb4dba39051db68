"""项目自带的测试：在 CPU 上一分钟内就能跑完。"""

import dataclasses
import json

import pytest
import torch

import char_gpt_zh.checkpoint as checkpoint_module
import char_gpt_zh.train as train_module
from char_gpt_zh.checkpoint import load_checkpoint
from char_gpt_zh.config import Config, ConfigError, load_config
from char_gpt_zh.data import build_datasets
from char_gpt_zh.metrics import TIMING
from char_gpt_zh.model import build_model
from char_gpt_zh.train import train


def tiny(tmp_path, **overrides) -> Config:
    """足够小的测试配置：在 CPU 上只需几十步。"""
    fields = dict(
        out_dir=str(tmp_path),
        device="cpu",
        max_steps=60,
        log_every=5,
        eval_every=20,
        save_every=20,
        # 固定种子：下面的阈值是按它设定的，与默认种子无关。
        seed=0,
        corpus_chars=4000,
        d_model=32,
        d_ff=64,
        n_layers=1,
        seq_len=16,
        batch_size=16,
        lr=0.01,
    )
    return Config(**{**fields, **overrides})


def events(out_dir) -> list[dict]:
    """一次运行的全部事件，去掉测量得到的计时字段，因为任意两次运行的计时都不同。"""
    lines = (out_dir / "metrics.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    return [{k: v for k, v in e.items() if k not in TIMING} for e in events]


def test_model_output_shape():
    cfg = Config()
    x = torch.stack([build_datasets(cfg).train[i][0] for i in range(3)])
    output = build_model(cfg)(x)
    assert output.shape == (3, cfg.seq_len, cfg.vocab_size)


def test_loss_falls(tmp_path):
    train(tiny(tmp_path, max_steps=120, eval_every=120))
    val = [e for e in events(tmp_path) if e["split"] == "val"]
    assert val[0]["step"] == 0 and val[-1]["step"] == 120
    assert val[-1]["loss"] < 0.8 * val[0]["loss"]


def test_checkpoint_round_trip(tmp_path):
    cfg = tiny(tmp_path, max_steps=10)
    train(cfg)
    ckpt = load_checkpoint(tmp_path / "checkpoints/last.pt")
    assert ckpt["step"] == 10
    model = build_model(Config(**ckpt["config"]))
    model.load_state_dict(ckpt["model"])
    model.eval()
    val = build_datasets(cfg).val
    x = torch.stack([val[i][0] for i in range(2)])
    with torch.no_grad():
        assert torch.isfinite(model(x)).all()


class Killed(Exception):
    pass


def test_exact_resume(tmp_path, monkeypatch):
    """在中途检查点之后立即被杀掉、再恢复的训练，与不中断的训练逐位相同。"""
    steps = 18
    full = tiny(tmp_path / "full", max_steps=steps, save_every=steps // 2)
    train(full)

    real_save = checkpoint_module.save_checkpoint

    def save_then_die(path, state, **kwargs):
        real_save(path, state, **kwargs)
        if path.name == "last.pt" and state["step"] == steps // 2:
            raise Killed

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_die)
    cut = dataclasses.replace(full, out_dir=str(tmp_path / "cut"))
    with pytest.raises(Killed):
        train(cut)
    monkeypatch.undo()
    train(dataclasses.replace(cut, resume="auto"))

    a = load_checkpoint(tmp_path / "full/checkpoints/last.pt")
    b = load_checkpoint(tmp_path / "cut/checkpoints/last.pt")
    assert a["step"] == b["step"] == steps
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for key, value in a["ema"].items():
        assert torch.equal(value, b["ema"][key]), key
    assert events(tmp_path / "full") == events(tmp_path / "cut")


def test_bad_config_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_config(["--lrr", "0.1"])
    assert exit_info.value.code == 2
    assert "'lr'" in capsys.readouterr().err  # 无论哪种语言，提示里都会写出字段名
    with pytest.raises(ConfigError):
        Config(lr=0)


def test_ema_is_logged_and_checkpointed(tmp_path):
    train(tiny(tmp_path, max_steps=20, eval_every=10))
    val = [e for e in events(tmp_path) if e["split"] == "val"]
    assert all("ema_loss" in e for e in val)
    ckpt = load_checkpoint(tmp_path / "checkpoints/last.pt")
    assert ckpt["ema"]["n_averaged"].item() == 20
