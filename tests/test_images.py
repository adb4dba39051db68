"""Issue #14, images: a cnn's image folder is indexed, not loaded; its images are decoded
in DataLoader workers, augmented from (seed, epoch, index) alone, normalized with
statistics saved for predict; bad folders are one line and exit 1; a kill -9 resumes
bitwise exactly with workers and augmentation."""

import json
import os
import signal
import subprocess
import sys

import pytest
from conftest import ProjectImport, make_project, wait_until
from test_project_inputs import assert_one_line, run

from scaffold.spec import build_spec

torch = pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")

COLOURS = ("red", "green", "blue")


def write_images(folder, per_class=12, classes=COLOURS, size=16, seed=0):
    """Noisy PNGs whose strongest channel is the class: a crop or a flip keeps it."""
    g = torch.Generator().manual_seed(seed)
    for c, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            x = torch.rand(size, size + 4, 3, generator=g) * 0.6
            x[..., c % 3] += 0.4
            Image.fromarray((x * 255).to(torch.uint8).numpy()).save(folder / name / f"{i}.png")
    return folder


def tiny(p, tmp_path, folder, **overrides):
    fields = dict(image_size=16, channels=[8], batch_size=8, device="cpu", log_every=5)
    fields.update(data_path=str(folder), out_dir=str(tmp_path / "run"), **overrides)
    return p.module("config").Config(**fields)


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    make_project(root, "imgproj", model="cnn")
    return root / "imgproj", build_spec("imgproj", model="cnn").package


def test_a_folder_is_indexed_and_only_a_bounded_sample_decoded(cnn, tmp_path, monkeypatch):
    folder = write_images(tmp_path / "imgs")
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda f, *a: opened.append(f) or real_open(f, *a))
    with ProjectImport(*cnn) as p:
        data_mod = p.module("data")
        monkeypatch.setattr(data_mod, "STATS_IMAGES", 5)
        data = data_mod.build_datasets(tiny(p, tmp_path, folder))
    assert len(opened) == 5  # the normalization sample, nothing else
    assert isinstance(data.train, data_mod.ImageFolder) and len(data.train) + len(data.val) == 36
    # the data set holds paths and labels, no pixels: no tensor holds a value per pixel
    tensors = [v for v in vars(data.train).values() if torch.is_tensor(v)]
    assert max(t.numel() for t in tensors) == len(data.train)
    assert data.meta["classes"] == sorted(COLOURS) and len(data.meta["mean"]) == 3
    assert data.sizes == {"in_channels": 3, "image_size": 16, "num_classes": 3}


def test_train_and_val_folders_are_the_split(cnn, tmp_path):
    write_images(tmp_path / "imgs" / "train", per_class=6)
    write_images(tmp_path / "imgs" / "val", per_class=2, seed=1)
    with ProjectImport(*cnn) as p:
        data = p.module("data").build_datasets(tiny(p, tmp_path, tmp_path / "imgs"))
        assert (len(data.train), len(data.val)) == (18, 6)
        write_images(tmp_path / "imgs" / "val", per_class=1, classes=["purple"])
        argv = ["--data-path", str(tmp_path / "imgs"), "--out-dir", str(tmp_path / "r")]
        assert_one_line(*run(p, "train", argv), 1, "classes not in train/", "purple")


def test_augmentation_is_a_function_of_seed_and_key(cnn, tmp_path):
    folder = write_images(tmp_path / "imgs", per_class=4)
    with ProjectImport(*cnn) as p:
        data_mod = p.module("data")
        cfg = tiny(p, tmp_path, folder)
        train = data_mod.build_datasets(cfg).train
        n = len(train)
        again = data_mod.build_datasets(cfg).train  # as a fresh worker's copy would be
        assert torch.equal(train[3][0], again[3][0])
        assert not torch.equal(train[3][0], train[3 + n][0])  # the same image, next epoch
        assert torch.equal(train[3][1], train[3 + n][1])
        other = data_mod.build_datasets(tiny(p, tmp_path, folder, seed=1)).train
        assert not torch.equal(train[3][0], other[3][0])
        plain = data_mod.build_datasets(tiny(p, tmp_path, folder, augment=False)).train
        assert torch.equal(plain[3][0], plain[3 + n][0])
        # the sampler's keys carry the epoch
        batches = data_mod.GlobalBatches(n, cfg)
        batches.set_position(2, 0)
        keys = sorted(k for batch in batches for k in batch)
        assert all(2 * n <= k < 3 * n for k in keys) and len(set(keys)) == len(keys)


def test_loss_falls_with_augmentation_and_predict_uses_the_saved_stats(cnn, tmp_path, capsys):
    folder = write_images(tmp_path / "imgs")
    with ProjectImport(*cnn) as p:
        cfg = tiny(p, tmp_path, folder, max_steps=40, eval_every=40, lr=3e-3)
        p.module("train").train(cfg)
        ckpt = p.module("checkpoint").load_checkpoint(tmp_path / "run/checkpoints/last.pt")
        capsys.readouterr()
        argv = ["--checkpoint", str(tmp_path / "run/checkpoints/last.pt")]
        p.module("predict").main(argv + ["--data-path", str(folder)])
    val = [e for e in map(json.loads, (tmp_path / "run/metrics.jsonl").open()) if "accuracy" in e]
    assert val[-1]["loss"] < 0.7 * val[0]["loss"]
    # the normalization statistics are the training images', saved for predict
    assert all(0.3 < m < 0.6 for m in ckpt["data"]["mean"]), ckpt["data"]
    assert ckpt["config"]["augment"]
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()[1:]]
    assert len(rows) == 36
    right = sum(os.path.basename(os.path.dirname(f)) == label for f, label in rows)
    assert right >= 30, rows


def test_bad_folders_are_one_line_and_exit_1(cnn, tmp_path):
    write_images(tmp_path / "empty", per_class=2)
    (tmp_path / "empty" / "grey").mkdir()
    write_images(tmp_path / "single", per_class=3, classes=["cat"])
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "flat" / "x.png")
    cases = {
        "empty": ["the class folder", "grey", "holds no images"],
        "single": ["every image is of class 'cat'"],
        "flat": ["has no class folders"],
    }
    with ProjectImport(*cnn) as p:
        for name, needles in cases.items():
            argv = ["--data-path", str(tmp_path / name), "--out-dir", str(tmp_path / "r")]
            assert_one_line(*run(p, "train", argv + ["--batch-size", "2"]), 1, *needles)


def test_a_decompression_bomb_is_one_line(cnn, tmp_path, monkeypatch):
    """Pillow refuses an image of over twice MAX_IMAGE_PIXELS (179 million by default):
    lowered here, so that 16 x 20 pixels are such an image."""
    folder = write_images(tmp_path / "imgs", per_class=3)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    argv = ["--data-path", str(folder), "--out-dir", str(tmp_path / "r"), "--batch-size", "2"]
    with ProjectImport(*cnn) as p:
        assert_one_line(*run(p, "train", argv), 1, ".png", "not a readable image")


def test_a_corrupt_image_met_in_a_worker_is_one_line_and_the_checkpoint_stays(
    cnn, tmp_path, monkeypatch
):
    folder = write_images(tmp_path / "imgs")
    argv = ["--data-path", str(folder), "--out-dir", str(tmp_path / "run")]
    argv += ["--image-size", "16", "--channels", "8", "--batch-size", "8", "--device", "cpu"]
    argv += ["--num-workers", "2", "--save-every", "2", "--eval-every", "100"]
    with ProjectImport(*cnn) as p:
        data_mod = p.module("data")
        monkeypatch.setattr(data_mod, "STATS_IMAGES", 1)
        assert run(p, "train", argv + ["--max-steps", "2"])[0] == 0
        # break a training image other than the one the statistics sample (seed 0)
        train = data_mod.build_datasets(tiny(p, tmp_path, folder)).train
        sampled = int(torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[0])
        bad = os.fsdecode(train.files[(sampled + 1) % len(train)])
        with open(bad, "r+b") as f:
            f.truncate(60)
        code, err = run(p, "train", argv + ["--max-steps", "40", "--resume", "auto"])
        resumed, _, err = err.partition("\n")  # "resumed from step 2", then the error
        assert_one_line(code, err, 1, os.path.basename(bad), "not a readable image")
        ckpt = p.module("checkpoint").load_checkpoint(tmp_path / "run/checkpoints/last.pt")
    assert ckpt["step"] >= 2


@pytest.mark.slow
def test_kill_9_of_an_image_folder_run_with_workers_resumes_exactly(tmp_path):
    folder = write_images(tmp_path / "imgs", per_class=16)
    root = make_project(tmp_path, "killimg", model="cnn")
    args = ["--data-path", str(folder), "--image-size", "16", "--channels", "8", "16"]
    args += ["--batch-size", "8", "--num-workers", "2", "--max-steps", "120"]
    args += ["--save-every", "20", "--eval-every", "40", "--device", "cpu"]
    command = [sys.executable, "-m", "killimg.train", *args]
    subprocess.run(command + ["--out-dir", "full"], cwd=root, check=True, capture_output=True)
    proc = subprocess.Popen(command + ["--out-dir", "cut"], cwd=root, stderr=subprocess.DEVNULL)
    assert wait_until((root / "cut/checkpoints/last.prev.pt").exists, 120)
    os.kill(proc.pid, signal.SIGKILL)  # the workers die with their parent's pipe
    proc.wait()
    resumed = command + ["--out-dir", "cut", "--resume", "auto"]
    subprocess.run(resumed, cwd=root, check=True, capture_output=True)
    full = torch.load(root / "full/checkpoints/last.pt", weights_only=True)
    cut = torch.load(root / "cut/checkpoints/last.pt", weights_only=True)
    assert 0 < cut["epoch"] and cut["step"] == full["step"] == 120
    for key, value in full["model"].items():
        assert torch.equal(value, cut["model"][key]), key
    assert full["data"] == cut["data"]
    with ProjectImport(root, "killimg") as p:
        timing = p.module("metrics").TIMING

    def events(path):
        rows = map(json.loads, path.read_text().splitlines())
        return [{k: v for k, v in row.items() if k not in timing} for row in rows]

    full_events = events(root / "full/metrics.jsonl")
    assert full_events == events(root / "cut/metrics.jsonl")
    val = [e["loss"] for e in full_events if e["split"] == "val"]
    assert val[-1] < 0.7 * val[0]  # it learns, with 2 workers and augmentation
