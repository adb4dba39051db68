"""The generated models against PyTorch's own modules, their data formats, schedules and
regularization, each checked in-process on CPU."""

import json
import math

import pytest

from scaffold.spec import OPTION_BY_NAME

torch = pytest.importorskip("torch")
nn = torch.nn


def copy_attention(ours, peer: nn.MultiheadAttention):
    # Our fused qkv Linear has nn.MultiheadAttention's packed in_proj layout.
    with torch.no_grad():
        ours.qkv.weight.copy_(peer.in_proj_weight)
        ours.qkv.bias.copy_(peer.in_proj_bias)
        ours.proj.weight.copy_(peer.out_proj.weight)
        ours.proj.bias.copy_(peer.out_proj.bias)


@pytest.mark.parametrize("attention", OPTION_BY_NAME["attention"].values)
def test_attention_and_encoder_layer_match_pytorch(project, attention):
    torch.manual_seed(0)
    with project(f"peer_{attention}", model="transformer", attention=attention) as p:
        model_mod = p.module("model")
        d, h, B, T = 32, 4, 3, 7
        x = torch.randn(B, T, d)
        padding = torch.zeros(B, T, dtype=torch.bool)
        padding[0, 4:] = True  # a padded sequence; no row is fully masked here
        mask = ~padding[:, None, None, :]

        ours = model_mod.SelfAttention(d, h, attn_dropout=0.0).eval()
        peer = nn.MultiheadAttention(d, h, batch_first=True).eval()
        copy_attention(ours, peer)
        expected, _ = peer(x, x, x, key_padding_mask=padding, need_weights=False)
        torch.testing.assert_close(ours(x, mask), expected, rtol=1e-5, atol=1e-5)

        for norm_first in (True, False):
            layer = model_mod.EncoderLayer(d, h, 64, 0.0, 0.0, norm_first).eval()
            ref = nn.TransformerEncoderLayer(
                d, h, 64, dropout=0.0, activation="gelu", batch_first=True, norm_first=norm_first
            ).eval()
            copy_attention(layer.attn, ref.self_attn)
            layer.ff[0].load_state_dict(ref.linear1.state_dict())
            layer.ff[2].load_state_dict(ref.linear2.state_dict())
            layer.norm1.load_state_dict(ref.norm1.state_dict())
            layer.norm2.load_state_dict(ref.norm2.state_dict())
            torch.testing.assert_close(
                layer(x, mask), ref(x, src_key_padding_mask=padding), rtol=1e-5, atol=1e-5
            )


def test_manual_attention_equals_sdpa_and_handles_masked_rows(project):
    torch.manual_seed(0)
    x = torch.randn(2, 5, 16)
    padding = torch.tensor([[False] * 5, [True] * 5])  # the second row is all padding
    mask = ~padding[:, None, None, :]
    outputs = {}
    for attention in ("sdpa", "manual"):
        with project(f"eq_{attention}", model="transformer", attention=attention) as p:
            torch.manual_seed(1)
            layer = p.module("model").SelfAttention(16, 2, attn_dropout=0.0).eval()
            outputs[attention] = layer(x, mask)
        with project(f"eqg_{attention}", model="gpt", attention=attention) as p:
            torch.manual_seed(1)
            causal = p.module("model").CausalSelfAttention(16, 2, attn_dropout=0.0).eval()
            outputs["gpt_" + attention] = causal(x)
    torch.testing.assert_close(outputs["manual"], outputs["sdpa"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(outputs["gpt_manual"], outputs["gpt_sdpa"], rtol=1e-5, atol=1e-6)
    assert torch.isfinite(outputs["manual"]).all()
    # A fully masked row: only the output projection's bias is left, as with SDPA.
    torch.testing.assert_close(outputs["manual"][1], outputs["sdpa"][1])


def test_manual_attention_survives_float16(project):
    with project("fp16", model="transformer", attention="manual") as p:
        layer = p.module("model").SelfAttention(16, 2, attn_dropout=0.0).eval().half()
        x = torch.randn(2, 5, 16).half()
        mask = torch.tensor([[True] * 3 + [False] * 2, [True] * 5])[:, None, None, :]
        assert torch.isfinite(layer(x, mask)).all()


def test_cnn_head_works_for_any_input_size(project):
    with project("anysize", model="cnn") as p:
        model = p.module("model").build_model(p.module("config").Config()).eval()
        for size in (17, 32, 64):
            assert model(torch.randn(2, 3, size, size)).shape == (2, 4)


@pytest.mark.parametrize(
    "model, chance, threshold, overrides",
    [
        ("cnn", "classes", 0.7, {"max_steps": 200, "channels": [16, 32], "num_samples": 1024}),
        (
            "transformer",
            "classes",
            0.7,
            {"max_steps": 200, "d_model": 64, "d_ff": 128, "n_layers": 1, "seq_len": 32},
        ),
        (
            "gpt",
            "unigram",
            0.6,
            {
                "max_steps": 300,
                "d_model": 64,
                "d_ff": 256,
                "n_layers": 2,
                "seq_len": 32,
                "corpus_chars": 30000,
            },
        ),
    ],
)
def test_models_learn_their_synthetic_data(project, tmp_path, model, chance, threshold, overrides):
    with project(f"learn_{model}", model=model) as p:
        Config = p.module("config").Config
        cfg = Config(out_dir=str(tmp_path), device="cpu", eval_every=10_000, **overrides)
        metrics = p.module("train").train(cfg)
        if chance == "unigram":
            data = p.module("data").build_datasets(cfg)
            ids = torch.as_tensor(data.train.ids.astype("int64"))  # numpy token ids
            freq = torch.bincount(ids).float() / len(ids)
            baseline = -(freq[freq > 0] * freq[freq > 0].log()).sum().item()
        else:
            baseline = math.log(cfg.num_classes)
    assert metrics["loss"] < threshold * baseline, (metrics, baseline)
    if "accuracy" in metrics:
        assert metrics["accuracy"] > 0.6


def test_cnn_trains_on_an_npz_file(project, tmp_path):
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    x = rng.normal(size=(200, 1, 12, 12)).astype("float32")
    x[y == 1, :, :6] += 1.5  # class 1 is brighter at the top
    np.savez(tmp_path / "images.npz", x=x, y=y)
    with project("npzproj", model="cnn") as p:
        cfg = p.module("config").Config(
            out_dir=str(tmp_path / "run"),
            device="cpu",
            data_path=str(tmp_path / "images.npz"),
            batch_size=32,
            max_steps=80,
            eval_every=80,
            channels=[8, 16],
        )
        metrics = p.module("train").train(cfg)
        ckpt = p.module("checkpoint").load_checkpoint(tmp_path / "run/checkpoints/last.pt")
    assert ckpt["config"]["in_channels"] == 1 and ckpt["config"]["image_size"] == 12
    assert ckpt["config"]["num_classes"] == 2 and metrics["accuracy"] > 0.8


def test_transformer_trains_on_a_tsv_file(project, tmp_path):
    g = torch.Generator().manual_seed(0)
    lines = []
    for i in range(300):
        good = i % 2 == 0
        words = ["great", "fine", "lovely"] if good else ["awful", "bad", "poor"]
        filler = ["the", "film", "was", "a", "plot", "and"]
        picks = torch.randint(6, (6,), generator=g).tolist()
        text = " ".join([filler[j] for j in picks] + [words[i % 3]])
        lines.append(f"{'pos' if good else 'neg'}\t{text}")
    (tmp_path / "reviews.tsv").write_text("\n".join(lines) + "\n")
    with project("tsvproj", model="transformer") as p:
        cfg = p.module("config").Config(
            out_dir=str(tmp_path / "run"),
            device="cpu",
            data_path=str(tmp_path / "reviews.tsv"),
            tokenizer="word",
            batch_size=32,
            max_steps=100,
            eval_every=100,
            seq_len=16,
            d_model=32,
            d_ff=64,
            n_layers=1,
            lr=3e-3,
        )
        metrics = p.module("train").train(cfg)
        ckpt = p.module("checkpoint").load_checkpoint(tmp_path / "run/checkpoints/last.pt")
    assert ckpt["data"]["classes"] == ["neg", "pos"]
    assert "great" in ckpt["data"]["vocab"] and ckpt["config"]["vocab_size"] == len(
        ckpt["data"]["vocab"]
    )
    assert metrics["accuracy"] > 0.9


def test_gpt_trains_on_a_text_file_and_samples(project, tmp_path, capsys):
    (tmp_path / "poem.txt").write_text("the cat sat on the mat. " * 200)
    with project("textproj", model="gpt") as p:
        cfg = p.module("config").Config(
            out_dir=str(tmp_path / "run"),
            device="cpu",
            data_path=str(tmp_path / "poem.txt"),
            max_steps=80,
            eval_every=80,
            seq_len=16,
            d_model=32,
            d_ff=64,
            n_layers=1,
            lr=3e-3,
            batch_size=16,
        )
        metrics = p.module("train").train(cfg)
        p.module("sample").main(
            [
                "--checkpoint",
                str(tmp_path / "run/checkpoints/best.pt"),
                "--prompt",
                "the ",
                "--max-new-tokens",
                "20",
            ]
        )
    out = capsys.readouterr().out
    assert out.startswith("the ") and len(out.strip()) == 24
    assert metrics["loss"] < 1.0


def closed_form(scheduler, step, total, lr):
    """The learning rate of each generated schedule at an optimizer step, by its formula."""
    cos = lambda t, T: 0.5 * lr * (1 + math.cos(math.pi * t / T))
    if scheduler == "none":
        return lr
    if scheduler == "cosine":
        return cos(step, total)
    if scheduler == "step":
        return lr * 0.1 ** (step // (total // 3))
    if scheduler == "warmup-cosine":
        w = total // 20
        return lr * (1e-3 + (1 - 1e-3) * step / w) if step < w else cos(step - w, total - w)
    if scheduler == "cosine-restarts":
        return cos(step % (total // 4), total // 4)
    if scheduler == "onecycle":
        up = 0.3 * total - 1
        lo, hi, end = lr / 25, lr, lr / 25 / 1e4
        if step <= up:
            return lo + (hi - lo) * (1 - math.cos(math.pi * step / up)) / 2
        return end + (hi - end) * (1 + math.cos(math.pi * (step - up) / (total - 1 - up))) / 2


@pytest.mark.parametrize("scheduler", OPTION_BY_NAME["scheduler"].values)
def test_logged_lr_follows_the_schedule(project, tmp_path, scheduler):
    total = 120
    with project(f"sched_{scheduler.replace('-', '_')}", scheduler=scheduler) as p:
        cfg = p.module("config").Config(
            out_dir=str(tmp_path),
            device="cpu",
            max_steps=total,
            log_every=1,
            eval_every=total,
            num_samples=256,
            batch_size=8,
            grad_accum_steps=2,
        )
        p.module("train").train(cfg)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    logged = [e["lr"] for e in map(json.loads, lines) if e["split"] == "train"]
    assert len(logged) == total
    for step, lr in enumerate(logged):
        assert lr == pytest.approx(
            closed_form(scheduler, step, total, cfg.lr), rel=1e-6, abs=1e-12
        ), step


def test_grad_clip_bounds_the_norm_and_label_smoothing_follows_the_formula(project, tmp_path):
    with project("reg") as p:
        Config, train_mod = p.module("config").Config, p.module("train")
        cfg = Config(label_smoothing=0.2, grad_clip=0.05, lr=1.0, device="cpu")
        logits, y = torch.randn(16, 4), torch.randint(4, (16,))
        smoothed = train_mod.loss_fn(cfg, logits, y)
        logp = logits.log_softmax(-1)
        expected = 0.8 * -logp.gather(1, y[:, None]).mean() + 0.2 * -logp.mean(dim=1).mean()
        torch.testing.assert_close(smoothed, expected)

        model = p.module("model").build_model(cfg)
        norms = []
        real = nn.utils.clip_grad_norm_

        def spy(params, max_norm):
            params = list(params)
            total = real(params, max_norm)
            after = torch.linalg.vector_norm(torch.stack([q.grad.norm() for q in params]))
            norms.append((total.item(), after.item()))
            return total

        train_mod.nn.utils.clip_grad_norm_ = spy
        try:
            train_mod.train(
                Config(
                    out_dir=str(tmp_path),
                    device="cpu",
                    max_steps=10,
                    grad_clip=0.05,
                    num_samples=256,
                )
            )
        finally:
            train_mod.nn.utils.clip_grad_norm_ = real
        assert len(norms) == 10
        assert all(after <= 0.05 * (1 + 1e-4) for _, after in norms)
        assert any(before > 0.05 for before, _ in norms)  # the clip did act
        assert sum(p.numel() for p in model.parameters()) > 0


def test_weight_decay_skips_biases_and_norms(project):
    with project("decay", model="transformer") as p:
        cfg = p.module("config").Config()
        model = p.module("model").build_model(cfg)
        opt = p.module("train").configure_optimizer(model, cfg, torch.device("cpu"))
        decayed, plain = opt.param_groups
        assert decayed["weight_decay"] == cfg.weight_decay and plain["weight_decay"] == 0.0
        assert all(q.dim() >= 2 for q in decayed["params"])
        names = {id(q): n for n, q in model.named_parameters()}
        assert all("bias" in names[id(q)] or "norm" in names[id(q)] for q in plain["params"])


def test_cnn_trains_on_an_image_folder_and_predicts(project, tmp_path, capsys):
    Image = pytest.importorskip("PIL.Image")
    g = torch.Generator().manual_seed(0)
    for label, channel in (("red", 0), ("blue", 2)):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i in range(40):
            pixels = (torch.rand(20, 20, 3, generator=g) * 80).to(torch.uint8)
            pixels[..., channel] += 150
            Image.fromarray(pixels.numpy()).save(tmp_path / "imgs" / label / f"{i}.png")
    with project("folderproj", model="cnn") as p:
        cfg = p.module("config").Config(
            out_dir=str(tmp_path / "run"),
            device="cpu",
            data_path=str(tmp_path / "imgs"),
            image_size=16,
            batch_size=16,
            max_steps=40,
            eval_every=40,
            channels=[8, 16],
        )
        metrics = p.module("train").train(cfg)
        ckpt = p.module("checkpoint").load_checkpoint(tmp_path / "run/checkpoints/best.pt")
        assert ckpt["data"]["classes"] == ["blue", "red"] and ckpt["config"]["image_size"] == 16
        p.module("predict").main(
            [
                "--checkpoint",
                str(tmp_path / "run/checkpoints/best.pt"),
                "--data-path",
                str(tmp_path / "imgs/red"),
            ]
        )
    lines = capsys.readouterr().out.strip().splitlines()
    assert metrics["accuracy"] > 0.9 and lines[0] == "file\tprediction" and len(lines) == 41
    assert sum(line.endswith("\tred") for line in lines) >= 36


def test_dropout_batch_norm_and_weight_decay_fields_take_effect(project):
    with project("regfields", model="cnn") as p:
        Config, build = p.module("config").Config, p.module("model").build_model
        x = torch.randn(4, 3, 16, 16)
        model = build(Config(dropout=0.5)).train()
        assert not torch.equal(model(x), model(x))  # dropout is on in training
        model.eval()
        assert torch.equal(model(x), model(x))  # and off in evaluation
        assert any(isinstance(m, nn.BatchNorm2d) for m in build(Config()).modules())
        assert not any(
            isinstance(m, nn.BatchNorm2d) for m in build(Config(batch_norm=False)).modules()
        )

        cfg = Config(lr=0.1, weight_decay=0.5, batch_norm=True)
        model = build(cfg)
        opt = p.module("train").configure_optimizer(model, cfg, torch.device("cpu"))
        before = {n: q.detach().clone() for n, q in model.named_parameters()}
        for q in model.parameters():
            q.grad = torch.zeros_like(q)
        opt.step()  # zero gradients: only the decoupled weight decay moves anything
        for name, q in model.named_parameters():
            if q.dim() >= 2:
                torch.testing.assert_close(q, before[name] * (1 - 0.1 * 0.5))
            else:
                assert torch.equal(q, before[name]), name


def test_onecycle_peaks_at_max_lr(project, tmp_path):
    with project("peak", scheduler="onecycle") as p:
        cfg = p.module("config").Config(max_lr=0.01)
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
        scheduler = p.module("train").build_scheduler(optimizer, cfg, total_steps=100)
        lrs = []
        for _ in range(100):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
    assert max(lrs) == pytest.approx(0.01) and lrs[0] == pytest.approx(0.01 / 25)
