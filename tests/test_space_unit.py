"""The functions behind each Space tab, without a server: loading sources, classify, filters, feature maps, compare."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import convhub
import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "space"))

import inference  # noqa: E402
import zoo_loader  # noqa: E402

SMALL_ZOO = ["fc", "net", "net_res"]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    convhub.hub._probe_cache.clear()


@pytest.fixture
def models_dir(tmp_path):
    """A save_pretrained folder per net; `net` carries a training record in its card, the others do not."""
    torch.manual_seed(0)
    for name in SMALL_ZOO:
        model = convhub.create(name)
        record = {"val_accuracy": 0.91, "train_accuracy": 0.93, "epochs": 3, "seconds": 1.0, "device": "cpu",
                  "dataset": "synthetic", "validation": "synthetic", "recipe": "default",
                  "recipe_description": "test", "seed": 0, "convhub_version": "0", "torch_version": "0"}
        model.save_pretrained(tmp_path / name, model_card_kwargs={"training": record} if name == "net" else {})
    return tmp_path


@pytest.fixture
def nets(models_dir):
    return zoo_loader.load_zoo(SMALL_ZOO, models_dir=models_dir)


@pytest.fixture
def bird_jpg(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "bird.jpg"
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path)
    return path


def test_local_folder_wins_and_records_come_from_cards(nets, models_dir):
    assert [n.name for n in nets] == SMALL_ZOO
    assert all(n.available and n.source == f"local folder {models_dir / n.name}" for n in nets)
    assert nets[1].record["val_accuracy"] == pytest.approx(0.91)
    assert nets[0].record is None  # untrained save: no metrics


def test_offline_falls_back_to_bundled_and_says_so(models_dir, tmp_path, monkeypatch):
    bundled = tmp_path / "bundled"
    convhub.create("net_depth").save_pretrained(bundled / "net_depth")
    monkeypatch.setattr(zoo_loader, "BUNDLED_DIR", bundled)
    started = time.perf_counter()
    nets = zoo_loader.load_zoo(["net", "net_depth", "net_res_deep"], models_dir=models_dir)
    assert time.perf_counter() - started < 5  # no Hub retries when offline
    net, depth, deep = nets
    assert net.source.startswith("local folder")
    assert depth.available and depth.source.startswith("bundled") and "Hub offline" in depth.source
    assert not deep.available and deep.source.startswith("unavailable") and "Hub offline" in deep.source


def test_unreachable_hub_is_probed_once_and_fails_fast(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(convhub.hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setattr(zoo_loader, "BUNDLED_DIR", tmp_path / "none")
    started = time.perf_counter()
    nets = zoo_loader.load_zoo(["net", "net_width"])
    assert time.perf_counter() - started < 5
    assert all(not n.available and "Hub unreachable (http://127.0.0.1:9)" in n.source for n in nets)


def test_hub_source_is_used_when_reachable(models_dir, monkeypatch):
    """Simulated Hub: resolve() returns a snapshot folder, as huggingface_hub's snapshot_download would."""
    asked = []
    monkeypatch.setattr(zoo_loader, "hub_reachable", lambda: True)
    monkeypatch.setattr(zoo_loader, "resolve", lambda repo, revision: asked.append((repo, revision)) or models_dir / "net")
    monkeypatch.setenv("CONVHUB_NAMESPACE", "someone")
    monkeypatch.setenv("CONVHUB_REVISION", "v1")
    [net] = zoo_loader.load_zoo(["net"])
    assert asked == [("someone/convhub-net", "v1")]
    assert net.source == "Hub someone/convhub-net@v1" and net.record["val_accuracy"] == pytest.approx(0.91)


def test_classify_runs_every_available_net(nets, bird_jpg):
    probs, table, seen = inference.classify(nets, bird_jpg)
    assert set(probs) == set(SMALL_ZOO)
    for name, p in probs.items():
        assert set(p) == {"airplane", "bird"} and sum(p.values()) == pytest.approx(1, abs=1e-5)
        expected = nets[SMALL_ZOO.index(name)].model.predict(Image.open(bird_jpg))
        assert p == pytest.approx(expected, abs=1e-5)  # same preprocessing as the package's predict
    assert list(table["net"]) == SMALL_ZOO and (table["latency_ms"] > 0).all()
    assert seen.shape == (256, 256, 3) and seen.dtype == np.uint8


@pytest.mark.parametrize("make", [
    lambda: Image.new("RGBA", (1, 1), (0, 0, 0, 0)),
    lambda: Image.new("L", (7, 300), 128),
    lambda: Image.new("P", (40, 20)),
    lambda: Image.new("I;16", (33, 33)),
])
def test_classify_accepts_odd_images(nets, make):
    probs, _, seen = inference.classify(nets, make())
    assert len(probs) == len(SMALL_ZOO) and seen.shape == (256, 256, 3)


def test_bad_uploads_get_a_clear_message(nets, tmp_path):
    corrupt = tmp_path / "holiday.jpg"
    corrupt.write_bytes(b"\xff\xd8 definitely not a jpeg")
    with pytest.raises(inference.BadImageError, match=r"cannot read holiday\.jpg as an image"):
        inference.classify(nets, corrupt)
    with pytest.raises(inference.BadImageError, match="no image"):
        inference.classify(nets, None)


def test_unavailable_nets_are_skipped(nets, bird_jpg):
    nets.append(zoo_loader.LoadedNet("net_depth", None, "unavailable — test"))
    probs, table, _ = inference.classify(nets, bird_jpg)
    assert "net_depth" not in probs and "net_depth" not in set(table["net"])


def test_filter_images(nets):
    first, deeper, note = inference.filter_images(nets[1].model)  # Net: conv1 16x3x3x3, conv2 8x16x3x3
    assert first.ndim == 3 and first.shape[2] == 3
    assert deeper.ndim == 3 and "conv2" in note and "16 kernels" in note
    assert inference.filter_images(nets[0].model)[:2] == (None, None)  # fc has no convolutions


def test_handmade_kernels_do_what_the_chapter_says():
    step = torch.zeros(1, 3, 8, 8)
    step[..., 4:] = 1.0  # a vertical edge between columns 3 and 4
    kernels = inference.handmade_kernels()
    vertical = torch.nn.functional.conv2d(step, kernels["vertical edges"].expand(1, 3, 3, 3), padding=1)[0, 0]
    horizontal = torch.nn.functional.conv2d(step, kernels["horizontal edges"].expand(1, 3, 3, 3), padding=1)[0, 0]
    assert set(vertical[2:6].abs().argmax(dim=1).tolist()) <= {3, 4}  # strongest response at the edge
    assert horizontal[2:6, 1:7].abs().max() == 0  # no horizontal edge inside
    blurred = torch.nn.functional.conv2d(torch.ones(1, 3, 5, 5), kernels["blur"].expand(1, 3, 3, 3), padding=1)
    assert blurred[0, 0, 2, 2] == pytest.approx(3.0)  # 1/9 over 9 pixels x 3 channels


def test_kernel_responses_gallery(nets, bird_jpg):
    gallery = inference.kernel_responses(nets[1].model, bird_jpg)
    captions = [c for _, c in gallery]
    assert captions[:4] == ["input (32x32)", "hand-made: blur", "hand-made: vertical edges", "hand-made: horizontal edges"]
    assert sum(c.startswith("learned: conv1[") for c in captions) == 6


def test_feature_maps_follow_the_stages(nets, bird_jpg):
    captions = [c for _, c in inference.feature_maps(nets[2].model, bird_jpg)]  # NetRes
    assert captions == ["input 3x32x32", "relu: 32x32x32 (first 16 channels)", "max_pool2d: 32x16x16 (first 16 channels)",
                        "relu_1: 16x16x16", "max_pool2d_1: 16x8x8", "relu_2: 16x8x8", "add: 16x8x8", "max_pool2d_2: 16x4x4"]
    with pytest.raises(inference.BadImageError, match="no feature maps"):
        inference.feature_maps(nets[0].model, bird_jpg)


def test_feature_maps_of_a_100_block_net_are_subsampled(bird_jpg):
    gallery = inference.feature_maps(convhub.create("net_res_deep100").eval(), bird_jpg)
    captions = [c for _, c in gallery]
    assert len(gallery) == 1 + inference.MAX_FEATURE_STAGES
    assert captions[1].startswith("relu:") and captions[-1].startswith("max_pool2d_1:")
    assert any(c.startswith("resblocks.99.add") or c.startswith("resblocks.5") for c in captions)


def test_compare_table_and_figures(nets):
    nets.append(zoo_loader.LoadedNet("net_res_deep100", None, "unavailable — test"))
    table = inference.compare_table(nets)
    expected = {i.name: i.params for i in convhub.list_models()}
    assert dict(zip(table["net"], table["params"])) == {n: expected[n] for n in SMALL_ZOO + ["net_res_deep100"]}
    assert table.set_index("net").loc["net", "val_accuracy"] == pytest.approx(0.91)
    assert table.set_index("net")["val_accuracy"].isna().sum() == 3  # untrained and unavailable nets
    assert table.set_index("net").loc["fc", "book_val_accuracy"] == pytest.approx(0.80)
    for figure in (inference.params_figure(table), inference.accuracy_figure(table)):
        assert figure.axes[0].get_xscale() == "log"
