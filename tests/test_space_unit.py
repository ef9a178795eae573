"""The functions behind each Space tab, without a server: loading sources, classify, filters, feature maps, compare."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import convhub
import numpy as np
import pytest
import torch
from conftest import free_port, peak_memory
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "space"))

import anatomy  # noqa: E402
import chapter  # noqa: E402
import figures  # noqa: E402
import inference  # noqa: E402
import skips  # noqa: E402
import zoo_loader  # noqa: E402

SMALL_ZOO = ["fc", "net", "net_res"]


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path_factory):
    """Offline, with an empty HF cache of our own (huggingface_hub read HF_HUB_CACHE at import: patch it too)."""
    cache = tmp_path_factory.mktemp("hf-cache")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(convhub.hub.constants, "HF_HUB_CACHE", str(cache))
    convhub.hub._probe_cache.clear()
    return cache


def put_in_hf_cache(cache, folder, repo_id: str, revision: str = "main") -> None:
    """What an earlier online snapshot_download leaves behind: refs/<revision> -> snapshots/<commit>/<files>."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / revision).write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for path in folder.iterdir():
        (snapshot / path.name).write_bytes(path.read_bytes())


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
    assert all(n.available and n.source == f"local folder (CONVHUB_MODELS_DIR)/{n.name}" for n in nets)
    assert not any(str(models_dir) in n.source for n in nets)  # no server paths on the page
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


def test_offline_uses_a_snapshot_already_in_the_hf_cache(models_dir, offline, tmp_path, monkeypatch):
    put_in_hf_cache(offline, models_dir / "net", "someone/convhub-net")
    monkeypatch.setenv("CONVHUB_NAMESPACE", "someone")
    monkeypatch.setattr(zoo_loader, "BUNDLED_DIR", tmp_path / "none")
    started = time.perf_counter()
    net, width = zoo_loader.load_zoo(["net", "net_width"])
    assert time.perf_counter() - started < 5
    assert net.available and net.source == "HF cache someone/convhub-net@main — Hub offline (HF_HUB_OFFLINE)"
    assert net.record["val_accuracy"] == pytest.approx(0.91)
    assert not width.available and width.source == "unavailable — Hub offline (HF_HUB_OFFLINE); no bundled copy"


def test_a_broken_folder_falls_back_to_the_next_source_and_the_log_says_so(models_dir, tmp_path, monkeypatch,
                                                                              caplog):
    (models_dir / "net" / "model.safetensors").write_bytes(b"\x00" * 10)  # truncated weights
    bundled = tmp_path / "bundled"
    convhub.create("net").save_pretrained(bundled / "net")
    monkeypatch.setattr(zoo_loader, "BUNDLED_DIR", bundled)
    [net] = zoo_loader.load_zoo(["net"], models_dir=models_dir)
    assert net.available and net.source.startswith("bundled (space/models) — local folder failed: ")
    assert "Hub offline" in net.source
    # the operator's folder was refused: the log said "1 of 1 nets loaded" and nothing about it
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning.startswith("net: local folder failed: weights in …/model.safetensors do not fit Net")
    assert warning.endswith("; loaded from bundled (space/models) instead") and "Hub offline" not in warning


def test_a_hub_revision_that_is_not_there_falls_back_and_the_log_says_so(olah_hub, models_dir, tmp_path,
                                                                         monkeypatch, caplog):
    """A Space pointed at a revision its repos lack loaded the bundled nets and said only "9 of 9 nets loaded: 9 from
    the weights bundled with this Space" (why, only on the Compare tab)."""
    olah_hub.publish(models_dir / "net", "alice/convhub-net", "net")
    bundled = tmp_path / "bundled"
    convhub.create("net").save_pretrained(bundled / "net")
    monkeypatch.setattr(zoo_loader, "BUNDLED_DIR", bundled)
    monkeypatch.setenv("CONVHUB_NAMESPACE", "alice")
    monkeypatch.setenv("CONVHUB_REVISION", "v2")
    [net] = zoo_loader.load_zoo(["net"])
    assert net.available and net.source.startswith("bundled (space/models) — Hub alice/convhub-net@v2: ")
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning.startswith("net: Hub alice/convhub-net@v2: "), warning
    assert warning.endswith("; loaded from bundled (space/models) instead")
    monkeypatch.setenv("CONVHUB_REVISION", "main")  # the revision that is there: no warning
    caplog.clear()
    [net] = zoo_loader.load_zoo(["net"])
    assert net.source == "Hub alice/convhub-net@main" and not [r for r in caplog.records if r.levelname == "WARNING"]


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
    assert asked == [("hf-hub:someone/convhub-net", "v1")]  # the repo only, never a folder of its name
    assert net.source == "Hub someone/convhub-net@v1" and net.record["val_accuracy"] == pytest.approx(0.91)


def test_published_settings_name_the_repos_and_env_vars_win(tmp_path, monkeypatch):
    settings = tmp_path / "convhub_space.json"
    settings.write_text('{"namespace": "alice", "revision": "v2", "models": {}}')
    monkeypatch.setattr(zoo_loader, "PUBLISHED_SETTINGS", settings)
    monkeypatch.delenv("CONVHUB_NAMESPACE", raising=False)
    assert zoo_loader.hub_repo("net_res") == "alice/convhub-net-res"
    monkeypatch.setenv("CONVHUB_NAMESPACE", "bob")
    assert zoo_loader.hub_repo("net_res") == "bob/convhub-net-res"
    settings.write_text('{"namespace": ["not", "a", "string"]}')
    assert zoo_loader.published_settings(settings) == {}
    settings.write_text("{broken")
    assert zoo_loader.published_settings(settings) == {}


def test_classify_runs_every_available_net(nets, bird_jpg):
    verdict, x = inference.classify(nets, bird_jpg)
    assert list(verdict.probabilities) == SMALL_ZOO and x.shape == (1, 3, 32, 32)
    for name, (p_airplane, p_bird) in verdict.probabilities.items():
        expected = nets[SMALL_ZOO.index(name)].model.predict(Image.open(bird_jpg))
        assert (p_airplane, p_bird) == pytest.approx((expected["airplane"], expected["bird"]), abs=1e-5)
    assert sum(verdict.votes.values()) == len(SMALL_ZOO) and verdict.winner in ("airplane", "bird")
    assert verdict.milliseconds > 0


def test_batched_classification_gives_each_image_its_own_answer(nets, bird_jpg, tmp_path):
    other = tmp_path / "other.png"
    Image.new("RGB", (40, 40), (30, 90, 220)).save(other)
    x = torch.cat([inference.load_input(bird_jpg), inference.load_input(other)])
    together = inference.classify_batch(nets, x)
    alone = [inference.classify(nets, path)[0] for path in (bird_jpg, other)]
    for a, b in zip(together, alone):
        for name in SMALL_ZOO:
            assert a.probabilities[name] == pytest.approx(b.probabilities[name], abs=1e-5)


def test_concurrent_requests_share_batches_computed_on_one_thread():
    """Each request gets its own answer, the batches run on the one thread of their own (native per-thread buffers
    grew the server when batches ran on whichever of Gradio's workers led), and an error reaches every request of
    its batch."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    seen, asking = [], threading.Semaphore(0)

    def compute(x):
        if not seen:  # the first batch waits until every request is on its way, then a little for them to queue
            for _ in range(12):
                assert asking.acquire(timeout=60)
            time.sleep(0.05)
        seen.append((threading.current_thread().name, len(x)))
        if (x < 0).any():
            raise ValueError("negative input")
        return [float(row.sum()) for row in x]

    def ask(i: int) -> float:
        asking.release()
        return batches(torch.full((1, 2), float(i)))

    batches = inference.SharedBatches(compute, max_batch=8)
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(ask, range(12)))
    assert answers == [2.0 * i for i in range(12)]
    assert {name for name, _ in seen} == {seen[0][0]} and seen[0][0].startswith("convhub-batches")
    assert sum(size for _, size in seen) == 12 and len(seen) < 12 and max(size for _, size in seen) <= 8
    with pytest.raises(ValueError, match="negative input"):
        batches(torch.full((1, 2), -1.0))
    assert batches(torch.ones(1, 2)) == 2.0  # the failed batch left nothing behind


def test_the_vote():
    verdict = inference.Verdict({"a": (0.9, 0.1), "b": (0.2, 0.8), "c": (0.3, 0.7)})
    assert verdict.votes == {"airplane": 1, "bird": 2} and verdict.winner == "bird"
    tie = inference.Verdict({"a": (0.9, 0.1), "b": (0.4, 0.6)})
    assert tie.winner == "airplane"  # mean P(bird) 0.35


def test_large_jpegs_decode_at_a_reduced_scale(nets, tmp_path):
    """A 4000x3000 photo decodes at 1/8 scale (libjpeg's DCT scaling), and the nets see practically the same."""
    rng = np.random.default_rng(1)
    small = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    path = tmp_path / "photo.jpg"
    Image.fromarray(small).resize((4000, 3000), Image.BILINEAR).save(path, quality=90)
    opened = inference.open_upload(path)
    assert opened.size == (500, 375)  # >= DRAFT_SIZE on both sides
    fast = inference.load_input(path)
    full = inference.TRANSFORMS(Image.open(path)).unsqueeze(0)
    assert (fast - full).abs().mean() < 0.05  # normalized units (one grey level is ~0.016): a few at most
    verdict, _ = inference.classify(nets, path)
    for net in nets:
        assert verdict.probabilities[net.name][1] == pytest.approx(net.model.predict(Image.open(path))["bird"], abs=0.02)
    png = tmp_path / "photo.png"
    Image.fromarray(small).save(png)
    assert inference.open_upload(png).size == (40, 30)  # other formats decode in full


def test_torch_threads_share_the_cores_between_requests(monkeypatch):
    monkeypatch.delenv("CONVHUB_TORCH_THREADS", raising=False)
    monkeypatch.setattr(inference.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert inference.torch_threads(2) == 1 and inference.torch_threads(1) == 2 and inference.torch_threads(8) == 1
    assert inference.torch_threads(2, override=3) == 3  # CONVHUB_TORCH_THREADS, as app.py reads it


@pytest.mark.parametrize("make", [
    lambda: Image.new("RGBA", (1, 1), (0, 0, 0, 0)),
    lambda: Image.new("L", (7, 300), 128),
    lambda: Image.new("P", (40, 20)),
    lambda: Image.new("I;16", (33, 33)),
])
def test_classify_accepts_odd_images(nets, make):
    verdict, x = inference.classify(nets, make())
    assert len(verdict.probabilities) == len(SMALL_ZOO) and x.shape == (1, 3, 32, 32)


def test_bad_uploads_get_a_clear_message(nets, tmp_path):
    corrupt = tmp_path / "holiday.jpg"
    corrupt.write_bytes(b"\xff\xd8 definitely not a jpeg")
    with pytest.raises(inference.BadImageError, match=r"cannot read holiday\.jpg as an image"):
        inference.classify(nets, corrupt)
    with pytest.raises(inference.BadImageError, match="no image"):
        inference.classify(nets, None)
    from test_space_server import decompression_bomb

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(decompression_bomb())
    with pytest.raises(inference.BadImageError, match=r"cannot read bomb\.png as an image: Image size \(400000000 pixels\)"):
        inference.classify(nets, bomb)


def test_unavailable_nets_are_skipped(nets, bird_jpg):
    nets.append(zoo_loader.LoadedNet("net_depth", None, "unavailable — test"))
    verdict, _ = inference.classify(nets, bird_jpg)
    assert "net_depth" not in verdict.probabilities


def test_grey_images_are_recognised_by_their_saturation(bird_jpg):
    grey = Image.new("L", (40, 40), 120)
    assert inference.saturation(inference.load_input(grey)) < 0.02
    assert inference.saturation(inference.load_input(Image.new("RGB", (40, 40), (20, 90, 230)))) > 0.5


def test_kernel_layers_name_and_show_every_kernel():
    [conv1, conv2] = inference.kernel_layers(convhub.create("net"))
    assert (conv1.name, tuple(conv1.weights.shape), conv1.params) == ("conv1", (16, 3, 3, 3), 448)
    assert (conv2.name, tuple(conv2.weights.shape), conv2.params) == ("conv2", (8, 16, 3, 3), 1160)
    assert conv2.caption == "conv2: 8 kernels of 3×3 over 16 input channels, 1,160 parameters"
    deep100 = convhub.create("net_res_deep100")
    deep = inference.kernel_layers(deep100)
    assert [layer.name for layer in deep] == ["conv1", "block 33", "block 67", "block 100"]
    assert torch.equal(deep[1].weights, deep100.resblocks[32].conv.weight)  # all 32 x 32 kernels, never a crop
    # the layer table counts a block's batch norm with it (9,280): the caption said 9,216 and nothing else
    assert deep[1].caption == ("block 33: 32 kernels of 3×3 over 32 input channels, 9,216 parameters "
                               "(+64 in its batch norm)")
    [bn1, bn2] = inference.kernel_layers(convhub.create("net_batchnorm"))
    assert (bn1.params, bn1.batch_norm_params, bn2.params, bn2.batch_norm_params) == (896, 64, 4624, 32)


def test_feature_maps_follow_the_books_stages(nets, bird_jpg):
    x = inference.load_input(bird_jpg)
    maps = inference.feature_maps(nets[2].model, x)  # NetRes
    assert [(stage.name, tuple(m.shape)) for stage, m in maps] == [
        ("conv1 → relu", (8, 32, 32)), ("pool1", (8, 16, 16)), ("conv2 → relu", (8, 16, 16)), ("pool2", (8, 8, 8)),
        ("conv3 → relu + skip", (8, 8, 8)), ("pool3", (8, 4, 4))]
    for name, blocks in (("net_res_deep100", ["block 33", "block 67", "block 100"]),
                         ("net_res_deep", ["block 3", "block 7", "block 10"])):
        model = convhub.create(name).eval()
        deep = inference.feature_maps(model, x)
        # the maps of the blocks whose kernels are shown (they were blocks 19, 40, 60 and 81 against 33, 67, 100)
        assert [stage.name for stage, _ in deep] == ["conv1 → relu", "pool1", *blocks, "pool2"]
        assert [layer.name for layer in inference.kernel_layers(model)] == ["conv1", *blocks]


def test_translation_probabilities_shift_the_image(nets, bird_jpg):
    x = inference.load_input(bird_jpg)
    curves = inference.translation(nets, x, shifts=(-3, 0, 5))
    for net in nets:
        assert curves[net.name].shape == (3, 2)
        unshifted = net.model(x).softmax(1)[0]
        assert torch.allclose(curves[net.name][1], unshifted, atol=1e-5)
        shifted = net.model(convhub.preprocessing.translate(x, 5)).softmax(1)[0]
        assert torch.allclose(curves[net.name][2], shifted, atol=1e-5)


def test_a_shift_moves_a_conv_layers_map_and_changes_a_fully_connected_layers_units():
    """The Translation tab's first-layer pictures, on the bundled nets and an example bird: `net`'s conv1 map of the
    shifted image is its map of the image, shifted (the same kernels everywhere), where fc1's units differ."""
    from convhub.preprocessing import translate

    models = Path(__file__).resolve().parents[1] / "space" / "models"
    net, fc = (convhub.ConvHubModel.from_pretrained(models / name).eval() for name in ("net", "fc"))
    x = inference.load_input(Path(__file__).resolve().parents[1] / "space" / "examples" / "cifar_bird_0001.jpg")
    for shift in (-8, -3, 1, 5):
        [conv] = inference.what_moves(net, x, [shift])
        assert conv.stage == "conv1 → tanh" and conv.is_map and conv.before.shape == conv.after.shape == (16, 32, 32)
        inside = slice(max(shift, 0) + 1, 32 + min(shift, 0) - 1)  # not the band shifted in, nor the far edge
        torch.testing.assert_close(conv.after[..., inside], translate(conv.before[None], shift)[0][..., inside],
                                   atol=1e-5, rtol=0)
        assert conv.agreement > 0.9999 and conv.in_place < 0.95  # the same map, but moved
        assert (conv.after - conv.before).abs().max() > 0.5  # the map moved: position by position it differs
        [dense] = inference.what_moves(fc, x, [shift])
        assert dense.stage == "fc1 → tanh" and not dense.is_map and dense.before.shape == (1024,)
        assert dense.agreement < 0.98
    one, eight = inference.what_moves(fc, x, [1, 8])
    assert eight.agreement < one.agreement
    assert inference.what_moves(net, x, [0])[0].agreement == inference.what_moves(fc, x, [0])[0].agreement == 1.0
    blank = inference.load_input(Image.new("RGB", (32, 32), (125, 123, 114)))
    assert inference.what_moves(net, blank, [4])[0].agreement == 1.0  # flat maps: no undefined correlation


def test_the_first_layer_pictures_show_one_channel_or_the_units_in_order():
    conv = inference.Moved("conv1 → tanh", 2, torch.zeros(3, 4, 4), torch.zeros(3, 4, 4), 1.0, 1.0)
    conv.before[1] = torch.arange(16.0).view(4, 4) / 16  # the channel that varies most
    conv.after[1] = conv.before[1].roll(1, -1)
    picture, channel = figures.moved_picture(conv, scale=2, gap=3)
    assert channel == 1 and picture.shape == (8 + 2, 2 * (8 + 2) + 3, 3) and picture.dtype == np.uint8  # framed
    assert (picture[:, 10:13] == 255).all() and (picture[0, :10] == 110).all()  # the gap, a frame
    assert not np.array_equal(picture[1:-1, 1:9], picture[1:-1, 14:22])
    units = torch.linspace(-1, 1, 10)[torch.randperm(10, generator=torch.Generator().manual_seed(0))]
    dense = inference.Moved("fc1 → tanh", 2, units, units.clone(), 1.0, 1.0)
    picture, channel = figures.moved_picture(dense, scale=1, gap=1)
    assert channel is None and picture.shape == (6, 13, 3)  # 10 units in a 4x4 square, framed
    before, after = picture[1:-1, 1:5].astype(int), picture[1:-1, 8:12].astype(int)
    assert np.array_equal(before, after)  # units that kept their values look the same
    assert before[0, 0, 2] > before[0, 0, 0] and before[-1, -1, 0] > before[-1, -1, 2]  # ordered: blue to red
    negated = inference.Moved("fc1 → tanh", 2, units, -units, -1.0, -1.0)
    picture, _ = figures.moved_picture(negated, scale=1, gap=1)
    after = picture[1:-1, 8:12].astype(int)  # in the original's order, not its own: red to blue
    assert after[0, 0, 0] > after[0, 0, 2] and after[-1, -1, 2] > after[-1, -1, 0]


@pytest.fixture
def served(nets, monkeypatch):
    """The page's handlers in-process over ``nets`` loaded for serving, and their Zoo."""
    import app

    monkeypatch.setattr(app, "inference", inference)
    monkeypatch.setattr(app, "anatomy", anatomy)
    monkeypatch.setattr(app, "skips", skips)
    zoo = app.Zoo(inference.prepare_for_serving(nets), threads=1)
    found = zoo_loader.find_zoo(SMALL_ZOO, models_dir=Path(nets[0].source).parent)
    return zoo, {fn.name: fn.fn for fn in app.build_demo(found, lambda: zoo).fns.values()}


def test_a_net_whose_output_is_not_a_number_shows_undecided_and_predict_says_why(nets, capsys):
    """Weights can pass convhub's load-time look (a black and a white image) and still overflow on other images:
    'nan%' reached the page, and predict() returned NaN probabilities."""
    import copy

    net = next(n for n in nets if n.name == "net")
    broken = copy.deepcopy(net.model)
    with torch.no_grad():  # tanh saturates, then 32 terms of +-3e38 overflow
        broken.fc1.weight.mul_(1e6)
        broken.fc2.weight.fill_(3e38)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    p = inference.probabilities([zoo_loader.LoadedNet("broken", broken, "test"), net], x)
    assert torch.equal(p["broken"], torch.full((3, 2), 0.5)) and p["net"].isfinite().all() and "its output for 3 image(s) is not a number" in \
        capsys.readouterr().err
    assert inference.classify_batch([zoo_loader.LoadedNet("net", broken, "test")], x)[0].probabilities["net"] == \
        (0.5, 0.5)
    with pytest.raises(convhub.ConvHubError, match="net's output for this image is not a number"):
        broken.predict(x[0].sigmoid())  # an image: values in [0, 1]


def test_a_click_on_the_receptive_field_map_stays_on_the_map(served):
    """The click's position comes from the browser: (-500, -500) set the sliders to -16, below their minimum."""
    import gradio as gr

    _, handlers = served

    def click(index):
        return handlers["rf_click"]("net", "pool1", gr.SelectData(None, {"index": index, "value": None}))

    assert click([10, 20]) == (1, 0)  # pool1 is 16x16 on a 256-pixel map: 16 pixels a unit
    assert click([-500, -500]) == (0, 0) and click([10**6, 10**6]) == (15, 15)
    for hostile in (["a", "b"], [[1], [2]], [1], None, [1e400, 0]):
        assert all(isinstance(value, type(gr.skip())) for value in click(hostile)), hostile


@pytest.fixture
def other_png(tmp_path):
    path = tmp_path / "other.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
    return path


def test_the_translation_slider_computes_each_images_curves_once(served, bird_jpg, other_png, monkeypatch):
    """A slider move redraws the curves of the image the page already has: the nets run on its 17 shifted copies
    once per image, not at every move (~140 ms for the whole zoo). The curves and the label drawn are the same."""
    import app

    zoo, handlers = served
    runs = []
    real = inference.translation
    monkeypatch.setattr(inference, "translation", lambda *args, **kwargs: runs.append(1) or real(*args, **kwargs))

    moves = [handlers["translation_ui"](str(bird_jpg), shift) for shift in (0, 3, -8, 8)]
    assert len(runs) == 1
    assert [move[2] for move in moves] == [""] * 4  # no message: every move drew its figure
    monkeypatch.setattr(app.uploads, "checked_upload", lambda path: Path(path))  # no Gradio upload cache here
    answer = handlers["translation"]({"path": str(bird_jpg)})  # the API's /translation shares them
    x = inference.load_input(bird_jpg)
    curves, winner = zoo.translation(x)
    assert len(runs) == 1
    fresh = real(zoo.available, x)
    assert set(curves) == set(fresh) and all(torch.equal(curves[name], fresh[name]) for name in fresh)
    assert winner == inference.classify_batch(zoo.available, x)[0].winner
    assert answer["nets"] == {name: [[round(float(a), 5), round(float(b), 5)] for a, b in c]
                              for name, c in fresh.items()}
    handlers["translation_ui"](str(other_png), 2)
    assert len(runs) == 2  # another image: its own curves
    handlers["translation_ui"](str(bird_jpg), 5)
    assert len(runs) == 2  # still remembered


def test_the_translation_tab_shows_what_a_shift_does_inside_the_first_layers(served, bird_jpg):
    zoo, handlers = served
    *_, conv_picture, conv_caption, fc_picture, fc_caption = handlers["translation_ui"](str(bird_jpg), -3)
    assert Path(conv_picture).is_file() and Path(fc_picture).is_file()
    assert conv_caption.startswith("**`net`, conv1 → tanh**") and "3 px left" in conv_caption
    assert "moved back **r\u00a0=\u00a01.000**" in conv_caption  # r kept with its number on a phone
    assert fc_caption.startswith("**`fc`, fc1 → tanh**, its 1,024 units") and "3 px left" in fc_caption
    r = float(re.search(r"r\s=\s(-?[\d.]+)", fc_caption).group(1))
    [moved] = inference.what_moves(zoo.by_name["fc"].model, inference.load_input(bird_jpg), [-3])
    assert r == round(moved.agreement, 3)
    assert r < 1
    assert "not shifted (move the slider)" in handlers["translation_ui"](str(bird_jpg), 0)[4]
    assert "your image" in conv_caption and "your image" in fc_caption
    # No image on the page (none yet, or the first upload was refused): the tab draws its example, and says so
    *_, conv_caption, _, fc_caption = handlers["translation_ui"](None, -3)
    for caption in (conv_caption, fc_caption):
        assert "the example bird | 3 px left" in caption and "your image" not in caption


def test_a_skip_connection_adds_the_blocks_input_and_nothing_else():
    """The Skip connections tab compares one stack with its skips and without: the same weights, and blocks that
    differ by exactly their input. Building them leaves the Space's other random draws as they were."""
    state = torch.random.get_rng_state()
    residual, plain = skips.stack(3, skips=True), skips.stack(3, skips=False)
    assert torch.equal(state, torch.random.get_rng_state())
    assert residual.training and plain.training  # batch norm on the batch's statistics, as in training
    pairs = zip(residual.state_dict().items(), plain.state_dict().items())
    assert all(a_name == b_name and torch.equal(a, b) for (a_name, a), (b_name, b) in pairs)
    x = torch.randn(4, 32, 16, 16, generator=torch.Generator().manual_seed(0))
    for with_skip, without in zip(residual.resblocks, plain.resblocks):
        assert torch.allclose(with_skip(x) - without(x), x, atol=1e-6)


def test_stacks_built_at_once_by_several_visitors_get_the_same_weights():
    from concurrent.futures import ThreadPoolExecutor

    reference = skips.stack(30, skips=True).state_dict()

    def same(_) -> bool:
        built = skips.stack(30, skips=True).state_dict()
        return all(torch.equal(built[name], reference[name]) for name in reference)

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(same, range(64)))


def test_the_gradient_reaching_each_block_is_the_one_backward_gives():
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(6, 3, 32, 32, generator=generator), torch.tensor([0, 1, 0, 1, 1, 0])
    measured = skips.measure(4, x, y)
    for with_skips, norms in ((True, measured.with_skips), (False, measured.without_skips)):
        net = skips.stack(4, skips=with_skips)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        assert list(norms) == pytest.approx([block.conv.weight.grad.norm().item() for block in net.resblocks],
                                            rel=1e-5)
    with pytest.raises(ValueError, match="at least one block"):
        skips.measure(0, x, y)


def test_the_skip_connections_tab_shows_what_the_text_says(served):
    """Its text says that with a few blocks the two stacks hardly differ, and that with 100 the plain one's
    gradients span orders of magnitude; the figure and its caption show the measurement."""
    _, handlers = served

    def spread(values) -> float:
        return max(values) / min(values)

    figure, caption = handlers["skips_ui"](100)
    with_skips, without_skips = figure.data
    assert len(with_skips.y) == len(without_skips.y) == 100 and figure.layout.yaxis.type == "log"
    assert spread(without_skips.y) > 1000 * spread(with_skips.y)
    assert caption == chapter.skips_caption(100, with_skips.y, without_skips.y)
    shallow_figure, _ = handlers["skips_ui"](3)
    shallow = shallow_figure.data
    assert spread(shallow[1].y) < 1.5 * spread(shallow[0].y)
    # one scale at every depth (rescaled, 3 blocks' 1.6x filled the plot as 100 blocks' millions did)
    assert shallow_figure.layout.yaxis.range == figure.layout.yaxis.range
    low, high = figure.layout.yaxis.range
    assert 10 ** low <= min(without_skips.y + with_skips.y) and max(without_skips.y) <= 10 ** high
    assert list(shallow_figure.layout.xaxis.range) == [0.5, 3.5] and shallow_figure.layout.xaxis.dtick == 1
    _, alone = handlers["skips_ui"](1)
    assert alone.startswith("**1 block**: nothing along the stack to compare") and "1.0×" not in alone


def test_ratios_read_as_the_caption_says_them():
    assert [chapter.times(v) for v in (1.0, 6.4, 9.96, 28.4, 8_451_851.3, float("inf"))] == [
        "1.0×", "6.4×", "10.0×", "28×", "8,451,851×", "∞× (a block gets none)"]


def test_the_inside_tab_draws_a_nets_kernels_once_and_its_maps_once_per_image(served, bird_jpg, other_png,
                                                                              monkeypatch):
    """matplotlib's drawing and the PNG took 0.5-1.7 s a request: the kernels (the fully connected net's unit
    images) are drawn once per net, the feature maps once per net and image. What is sent again is what was drawn."""
    import gradio as gr

    zoo, handlers = served
    inside = handlers["inside_ui"]
    drawings = []
    for name in ("kernels_figure", "feature_maps_figure", "templates_figure"):
        real = getattr(figures, name)
        monkeypatch.setattr(figures, name, lambda *args, _real=real, _name=name: drawings.append(_name) or
                            _real(*args))

    first = inside("net", str(bird_jpg))
    assert drawings == ["kernels_figure", "feature_maps_figure"]
    again = inside("net", str(bird_jpg))
    assert drawings == ["kernels_figure", "feature_maps_figure"]  # nothing drawn again
    assert again[0] == first[0] and again[1] is first[1] and again[2]["value"] is first[2]["value"]
    model = zoo.by_name["net"].model
    x = inference.load_input(bird_jpg)
    fresh = gr.Plot().postprocess(figures.feature_maps_figure(inference.feature_maps(model, x),
                                                              inference.to_display(x[0], scale=2)))
    assert again[2]["value"].plot == fresh.plot and again[2]["visible"]
    drawings.clear()
    assert inside("net", str(other_png))[2]["value"].plot != fresh.plot  # another image: its own maps
    assert drawings == ["feature_maps_figure"]
    inside("net_res", str(bird_jpg))  # another net: its own kernels and maps
    assert drawings == ["feature_maps_figure", "kernels_figure", "feature_maps_figure"]
    fc = [inside("fc", str(bird_jpg)) for _ in range(2)]
    assert drawings[3:] == ["templates_figure"] and fc[1][1] is fc[0][1] and fc[1][2]["visible"] is False


def test_sharing_counts():
    conv, linear = inference.sharing_counts(32, 3, 16, 3)
    assert conv == 448 and conv == sum(p.numel() for p in torch.nn.Conv2d(3, 16, 3).parameters())
    assert linear == sum(p.numel() for p in torch.nn.Linear(3 * 32 * 32, 16 * 32 * 32).parameters())
    assert inference.sharing_counts(64, 3, 16, 3)[0] == conv  # independent of the image size


def test_compare_rows(nets):
    nets.append(zoo_loader.LoadedNet("net_res_deep100", None, "unavailable — test"))
    rows = {r["net"]: r for r in inference.compare_rows(nets)}
    expected = {i.name: i.params for i in convhub.list_models()}
    assert {n: r["params"] for n, r in rows.items()} == {n: expected[n] for n in SMALL_ZOO + ["net_res_deep100"]}
    assert rows["net"]["val_accuracy"] == pytest.approx(0.91) and rows["fc"]["val_accuracy"] is None
    assert rows["fc"]["book_val_accuracy"] == pytest.approx(0.80)


def test_scoreboard_puts_the_vote_first_and_marks_disagreement():
    import figures

    verdict = inference.Verdict({"fc": (0.9, 0.1), "net": (0.2, 0.8), "net_res": (0.3, 0.7)}, 4.2)
    rows = {"fc": {"params": 3737474, "val_accuracy": 0.869}, "net": {"params": 18090, "val_accuracy": None},
            "net_res": {"params": 16130, "val_accuracy": 0.916}}
    page = figures.scoreboard_html(verdict, rows, {"net": "alice/convhub-net"}, note="a note <b>")
    assert page.index("2 of 3 nets say") < page.index("<table")
    assert "<b class='vote-class'>bird</b>" in page and "a note &lt;b&gt;" in page
    assert page.count("class='disagrees'") == 1 and "class='disagrees' data-net='fc'" in page
    assert "href='https://huggingface.co/alice/convhub-net'" in page and "3,737,474" in page
    assert "class='fill bird' style='left:50.0%;width:30.0%'" in page  # net's P(bird) 0.8: from the middle to 80%
    assert "class='fill airplane' style='left:10.0%;width:40.0%'" in page  # fc's 0.1: from 10% to the middle
    with_truth = figures.scoreboard_html(verdict, rows, {}, true_label="airplane")
    assert "True label: <b>airplane</b> (1 of 3 nets right)" in with_truth
    assert with_truth.count("class='disagrees'") == 2


def test_figures_draw_what_the_chapter_argues(nets, bird_jpg):
    import figures

    x = inference.load_input(bird_jpg)
    kernels = figures.kernels_figure(inference.kernel_layers(nets[1].model))
    assert len(kernels.subfigs) == 2 and all(len(sf.axes) == 2 for sf in kernels.subfigs)  # grid + colour bar
    grid = kernels.subfigs[0].axes[0].images[0]
    low, high = grid.get_clim()
    assert low == -high  # zero-centred
    block = inference.KernelLayer("block 1", torch.randn(32, 32, 3, 3), 32, 32, 9280)  # a residual block's conv
    wide = figures.kernels_figure([block])  # 8 of its 32 rows: 32 rows of 32 kernels were a wall of noise
    assert wide.subfigs[0].axes[0].images[0].get_array().shape == (8 * 4 - 1, 32 * 4 - 1)
    assert "the first 8 of 32 output channels shown" in wide.subfigs[0]._suptitle.get_text()
    assert wide.get_size_inches()[1] < 4
    shipped = convhub.ConvHubModel.from_pretrained(Path(__file__).resolve().parents[1] / "space" / "models" / "net")
    for layer in inference.kernel_layers(shipped):  # its whitened conv1's few large weights must not wash out the rest
        norm, _ = figures.kernel_colours(layer.weights)
        typical = float(layer.weights.abs().median())
        assert norm(typical) - norm(0) >= 0.15 * (norm(norm.vmax) - norm(0)), layer.caption
    whitened = torch.randn(16, 3, 3, 3) * 0.1
    whitened[-3:] *= 40  # a whitened conv's faint directions, scaled up
    (compressed, ticks), (plain, no_ticks) = figures.kernel_colours(whitened), figures.kernel_colours(
        torch.randn(8, 16, 3, 3))
    assert ticks[0] == -compressed.vmax and ticks[-1] == compressed.vmax and 0.0 in ticks and no_ticks is None
    assert compressed(0.1) - compressed(0) > 0.1 and compressed(-compressed.vmax) == 0
    assert plain(plain.vmax) == 1 and abs(plain(0) - 0.5) < 1e-9  # linear where no weight stands out
    maps = figures.feature_maps_figure(inference.feature_maps(nets[1].model, x), inference.to_display(x[0], 2))
    labels = [t.get_text() for ax in maps.axes for t in ax.texts]
    assert [label for label in labels if "\n" in label] == [
        "conv1 → tanh\n16×32×32", "pool1\n16×16×16", "conv2 → tanh\n8×16×16", "pool2\n8×8×8"]
    assert labels[0] == "input 3×32×32" and [f"ch {c}" for c in range(8)] == [t for t in labels if t.startswith("ch")]
    rows = inference.compare_rows(nets)
    compare = figures.compare_figure(rows)
    assert compare.layout.xaxis.type == "log"
    assert [b.label for b in compare.layout.updatemenus[0].buttons] == ["log scale", "linear scale"]
    table = figures.compare_markdown(rows)
    assert "3,737,474" in table and "18,090" in table
    assert table.splitlines()[0] == "| net | ours (val) | book (val) | params | epochs |"

    def row(markdown: str, first_cell: str) -> list[str]:
        return next(line.split(" | ") for line in markdown.splitlines() if line.startswith(f"| {first_cell} |"))

    assert row(table, "`net_res`")[3] == "16,130"  # after ours and the book's accuracies, which a phone shows first
    linked = figures.compare_markdown(rows, {"net": "alice/convhub-net", "fc": "bad)name/x"})
    assert row(linked, "[`net`](https://huggingface.co/alice/convhub-net)")[3] == "18,090"
    assert "(https://huggingface.co/bad%29name/x)" in linked  # a repo id cannot end the link early
    sharing = figures.sharing_figure(3, 16, 3, 32)
    assert sharing.data[0].y[list(sharing.data[0].x).index(32)] == 448  # the 32x32 point
    labelled = {trace.text[0]: trace.x[0] for trace in sharing.data if trace.text}  # both counts, read on the plot
    assert labelled == {"448": 32, "50,348,032": 32}
    assert all(t.textposition.endswith("left") for t in figures.sharing_figure(3, 16, 3, 256).data if t.text)


def test_compare_labels_never_sit_on_each_other():
    import figures

    bundled = Path(__file__).resolve().parents[1] / "space" / "models"  # the nine trained nets the Space ships
    rows = inference.compare_rows(zoo_loader.load_zoo(models_dir=bundled))
    assert len(rows) == 9 and "¹ The book trained only the 100-block" in figures.compare_markdown(rows)
    fig = figures.compare_figure(rows)
    labels = [a for a in fig.layout.annotations if a.text in {r["net"] for r in rows}]
    assert sorted(a.text for a in labels) == sorted(r["net"] for r in rows)
    (low, high), height = fig.layout.yaxis.range, fig.layout.height - fig.layout.margin.t - fig.layout.margin.b
    placed = []  # pixel y of each label's centre
    for a in labels:
        point_y = (high - a.y) / (high - low) * height
        assert 0 <= point_y + a.ay <= height, a.text  # inside the plot
        placed.append(point_y + a.ay)
    for i, y1 in enumerate(placed):  # on a phone any two labels may overlap in x: none may in y
        for y2 in placed[i + 1:]:
            assert abs(y1 - y2) >= figures.LABEL_GAP_PX - 0.01
    book = [t for t in fig.data if t.name and t.name.endswith("(book)")]
    assert "net_depth & net_res (book)" in [t.name for t in book]  # one hollow mark, both names on hover


def test_layer_table_counts_every_parameter(nets):
    import figures

    text = figures.layers_markdown(anatomy.stages(nets[1].model))
    assert "| conv1 → tanh | 16×32×32 | 448 | 3×3 |" in text and "| pool2 | 8×8×8 | 0 | 10×10 |" in text
    assert "**18,090**" in text


def test_sources_summary():
    nets = [zoo_loader.LoadedNet("fc", object(), "bundled (space/models) — Hub offline (HF_HUB_OFFLINE)"),
            zoo_loader.LoadedNet("net", object(), "local folder /m/net"),
            zoo_loader.LoadedNet("net_res", None, "unavailable — not in /m; Hub offline (HF_HUB_OFFLINE)")]
    assert zoo_loader.sources_summary(nets) == (
        "**2 of 3 nets loaded**: 1 from the weights bundled with this Space, 1 from local folder. "
        "Unavailable: `net_res` — Hub offline (HF_HUB_OFFLINE). Details on the Compare tab.")
    assert [zoo_loader.source_kind(n.source) for n in nets] == ["bundled", "local folder", "unavailable"]
    assert zoo_loader.sources_summary(nets, pointer="").endswith("Hub offline (HF_HUB_OFFLINE).")
    # the log's line is plain text: a log shows Markdown's ** and ` as they are
    assert zoo_loader.sources_summary(nets, markdown=False) == (
        "2 of 3 nets loaded: 1 from the weights bundled with this Space, 1 from local folder. "
        "Unavailable: net_res — Hub offline (HF_HUB_OFFLINE). Details on the Compare tab.")
    # each net's own line leaves out what the summary says once
    assert [zoo_loader.source_details(n) for n in nets] == ["bundled (space/models)", "local folder /m/net",
                                                           "unavailable — not in /m"]
    assert zoo_loader.source_kind("Hub someone/convhub-net@v1") == "Hub"


def test_the_summary_line_shows_only_our_own_words_about_the_hub():
    """It kept any piece of a net's notes that began "Hub unreachable": a Hub server's error, a card's key or a
    config's class name could begin one, and its <b> and remote ![image](url) went onto the page unescaped."""
    hostile = "local folder failed: boom; Hub unreachable <b>HUB</b> ![h](http://127.0.0.1:9/h.png)"
    nets = [zoo_loader.LoadedNet("fc", object(), f"bundled (space/models) — {hostile}; Hub offline (HF_HUB_OFFLINE)"),
            zoo_loader.LoadedNet("net", object(), f"bundled (space/models) — {hostile}")]
    line = zoo_loader.sources_summary(nets)
    assert "<b>" not in line and "![" not in line and "127.0.0.1:9" not in line
    assert line.endswith("— Hub offline (HF_HUB_OFFLINE). Details on the Compare tab.")


def test_what_the_page_shows_of_a_failure_is_one_line_of_plain_text():
    error = convhub.ConvHubError("bad card:\n  in \"<unicode string>\", line 3\n    ^\n\x1b[31mred http://e.example/x")
    shown = zoo_loader.describe_failure(error)
    assert "\n" not in shown and "\x1b" not in shown and "\ufffd[31mred" in shown
    plain = zoo_loader.as_plain_text(shown + " ![i](u.png) [l](http://e.example) <b>")
    assert "http://" not in plain and not re.search(r"(?<!\\)(!\[|\]\(|<b>)", plain)  # no markup unescaped


def test_a_net_whose_outputs_are_not_airplane_then_bird_is_not_served_upside_down(models_dir):
    """The page reads output 0 as airplane; a config may name its outputs in the other order."""
    config = json.loads((models_dir / "net" / "config.json").read_text())
    (models_dir / "net" / "config.json").write_text(json.dumps({**config, "class_names": ["bird", "airplane"]}))
    [net] = zoo_loader.load_zoo(["net"], models_dir=models_dir)
    assert "its outputs are 'bird', 'airplane', not airplane and bird in that order" in net.source
    assert not net.source.startswith("local folder")  # the next candidate (the bundled copy) or none


def test_an_unreadable_uploads_name_is_shown_as_text(served, tmp_path):
    """The name goes into the visitor's status line: Gradio keeps []()! in names, and they made links."""
    _, handlers = served
    path = tmp_path / "[l](http:evil) ![i](u.png).png"
    path.write_bytes(b"not an image")
    box, _, _, status, _, kept = handlers["classify_ui"](str(path), None)
    assert "cannot read" in status and "\\[l\\](http" in status and not re.search(r"(?<!\\)\]\(", status)
    assert box is None and kept is None  # with no image before it, the box is emptied


def test_every_net_is_traced_before_any_request_is_served(models_dir, monkeypatch):
    """torch.fx's tracing patches nn.Module calls process-wide while it runs: a net traced on first use, while other
    requests ran, made theirs fail (classify too)."""
    import app

    monkeypatch.setattr(zoo_loader, "BUNDLED_DIR", models_dir / "none")
    zoo = app.load_nets(zoo_loader.find_zoo(SMALL_ZOO, models_dir=models_dir))
    monkeypatch.setattr(anatomy, "_trace", lambda model: pytest.fail("a net was traced while serving"))
    for net in zoo.available:
        assert anatomy.stages(net.model)


def test_everything_but_classify_computes_in_one_group_of_the_spaces_concurrency():
    """Each of ~30 listeners had a concurrency limit of its own: one visitor ran a dozen figure jobs at once."""
    import app

    groups = {}
    for fn in app.demo.fns.values():
        groups.setdefault((fn.concurrency_id, fn.concurrency_limit), []).append(fn.name)
    assert set(groups) == {("classify", app.CLASSIFY_CONCURRENCY), ("page", app.CONCURRENCY)}
    assert sorted(groups["classify", app.CLASSIFY_CONCURRENCY]) == ["classify", "classify_example", "classify_ui"]


def test_the_sliders_of_one_figure_share_one_listener(models_dir, monkeypatch):
    """A listener per slider ran two jobs at once when two sliders moved in quick succession (the page's concurrency
    group runs two), and the earlier move's figure could come last and stay; one listener runs the latest move only."""
    import app
    import gradio as gr

    monkeypatch.setattr(zoo_loader, "BUNDLED_DIR", models_dir / "none")
    demo = app.build_demo(zoo_loader.find_zoo(SMALL_ZOO, models_dir=models_dir), lambda: None)
    sliders = {block_id for block_id, block in demo.blocks.items() if isinstance(block, gr.Slider)}
    for name, count in (("sharing_ui", 4), ("rf_ui", 2), ("translation_ui", 1), ("skips_ui", 1)):
        moved_by_sliders = [fn for fn in demo.fns.values()
                            if fn.name == name and any(block_id in sliders for block_id, _ in fn.targets)]
        assert len(moved_by_sliders) == 1, name
        assert len(moved_by_sliders[0].targets) == count and moved_by_sliders[0].trigger_mode == "always_last"


def test_a_slider_value_being_typed_leaves_its_figure_and_one_out_of_range_is_brought_in(models_dir, monkeypatch):
    """Every keystroke in a slider's box is sent: an empty box or a lone "-" (None), NaN (Python's JSON reads it),
    or 1 on the way to 128. They failed the event (Gradio's bounds check, or "cannot convert float NaN to
    integer"), and with it the value typed last."""
    import app
    import gradio as gr

    monkeypatch.setattr(zoo_loader, "BUNDLED_DIR", models_dir / "none")
    found = zoo_loader.find_zoo(SMALL_ZOO, models_dir=models_dir)
    zoo = app.load_nets(found)
    demo = app.build_demo(found, lambda: zoo)
    handlers = {fn.name: fn.fn for fn in demo.fns.values()}
    stage = anatomy.stages(zoo.by_name["net"].model)[1].name
    for typed in (None, float("nan"), float("inf")):
        for name, args in {"sharing_ui": (typed, 3, 16, 3), "translation_ui": (None, typed),
                           "rf_ui": ("net", stage, typed, 0, None), "skips_ui": (typed,)}.items():
            assert all(out == gr.skip() for out in handlers[name](*args)), (name, typed)
    _, text = handlers["sharing_ui"](1000, 0, 16, 3)
    assert text.startswith("On a 256×256 image, `Conv2d(1, 16, 3)`")  # at the sliders' ends
    assert ": 112,384× more." in handlers["sharing_ui"](32, 3, 16, 3)[1]
    assert ": 1.9× more." in handlers["sharing_ui"](2, 3, 16, 3)[1]  # 832 against 448
    assert ": 7.0× fewer: on an image this small" in handlers["sharing_ui"](1, 3, 16, 3)[1]  # 64 against 448
    _, _, said = handlers["rf_ui"]("net", stage, -3, 99, None)
    assert "unit (0, " in said
    sliders = [b for b in demo.blocks.values() if isinstance(b, gr.Slider)]
    assert handlers["skips_ui"](1000)[1].startswith("**100 blocks**") and handlers["skips_ui"](-2)[1].startswith(
        "**1 block**")  # at the slider's ends
    assert all(slider.get_config()["buttons"] == [] for slider in sliders)  # a reset sent no input event
    assert len(sliders) == 8 and all(b.preprocess(p) is None for b in sliders for p in (None, "", "-", "nan"))
    assert [b.preprocess(p) for b in sliders[:1] for p in (3, "-5", 99)] == [3.0, -5.0, 99.0]  # in range: its handler


def test_app_wires_named_endpoints_and_a_listed_net_that_fails_to_load(models_dir, monkeypatch):
    """build_demo without a server: the public API names. The page is built before the nets load (no torch), so a
    net whose weights then fail to load is listed, and its handlers and the Compare tab say it is unavailable."""
    import app

    convhub.create("net_depth").save_pretrained(models_dir / "net_depth")
    (models_dir / "net_depth" / "model.safetensors").write_bytes(b"\x00" * 10)  # truncated weights
    monkeypatch.setattr(zoo_loader, "BUNDLED_DIR", models_dir / "none")
    found = zoo_loader.find_zoo([*SMALL_ZOO, "net_depth"], models_dir=models_dir)
    zoo = app.load_nets(found)
    demo = app.build_demo(found, lambda: zoo)
    public = {fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public"}
    assert public == {"classify", "filters", "feature_maps", "translation", "receptive_field", "compare",
                      "skip_connections"}
    handlers = {fn.name: fn.fn for fn in demo.fns.values()}
    dropdowns = {b.elem_id: [value for _, value in b.choices] for b in demo.blocks.values()
                 if type(b).__name__ == "Dropdown" and b.elem_id}
    assert dropdowns["inside-net"] == [*SMALL_ZOO, "net_depth"]
    layers, kernels, maps, text = handlers["inside_ui"]("net_depth", None)
    assert text == "⚠️ net_depth is not available here"  # and no other net's figures stay beside it
    assert (layers, kernels, maps["value"], maps["visible"]) == ("", None, None, False)
    assert handlers["rf_ui"]("net_depth", "pool1", 4, 4, None) == (None, None, "⚠️ net_depth is not available here")
    _, table, sources = handlers["compare_ui"]()
    assert "**3 of 4 nets loaded**" in sources and "`net_depth`: unavailable — local folder failed" in sources
    assert "convhub-net) | 0.910 | 0.89 | 18,090 |" in table  # `net`, from its card
    assert "convhub-net-depth) | — | 0.90 | 16,130 |" in table  # the unavailable net: its size, no accuracy
    markdown = " ".join(str(b.value) for b in demo.blocks.values() if type(b).__name__ == "Markdown")
    assert "locality" in markdown and "weight sharing" in markdown and "skip" in markdown


def test_the_page_is_built_before_torch_is_imported(tmp_path):
    """Importing torch takes ~1.4 s of the start-up: app builds its page from find_zoo without it, and the nets (with
    torch) load when main() has the server up, or when a handler first needs them (app.NETS())."""
    import os
    import subprocess

    code = ("import sys, app; assert 'torch' not in sys.modules, 'torch imported'; zoo = app.NETS(); "
            "listed = [net.name for net in app.FOUND if net.has_convolutions]; "
            "print(len(zoo.available), 'torch' in sys.modules, listed == zoo.conv_names)")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path), "GRADIO_ANALYTICS_ENABLED": "False"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env,
                            cwd=Path(__file__).resolve().parents[1] / "space")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-3:] == ["9", "True", "True"]


def test_a_net_that_loads_but_cannot_run_is_served_as_unavailable(nets):
    nets[1].model.fc1 = torch.nn.Linear(7, 32)  # a layer that does not fit the one before it
    prepared = inference.prepare_for_serving(nets)
    assert [net.available for net in prepared] == [True, False, True]
    assert prepared[1].source.startswith("unavailable — it loaded (local folder (CONVHUB_MODELS_DIR)/net) but cannot "
                                         "run: RuntimeError: mat1 and mat2 shapes cannot be multiplied")
    assert prepared[2].served is not None


def test_every_handler_waits_for_the_nets_before_using_torch(nets, bird_jpg, monkeypatch):
    """The page is up before torch is imported: app's `inference` and `anatomy` are bound by load_nets. Each handler,
    called first, must ask for the nets (which binds them) before it touches either."""
    import app
    import gradio as gr

    monkeypatch.setattr(app, "inference", inference)
    monkeypatch.setattr(app, "anatomy", anatomy)
    zoo = app.Zoo(inference.prepare_for_serving(nets), threads=1)
    found = zoo_loader.find_zoo(SMALL_ZOO, models_dir=Path(nets[0].source).parent)  # the page lists them all

    def load():
        monkeypatch.setattr(app, "inference", inference)
        monkeypatch.setattr(app, "anatomy", anatomy)
        monkeypatch.setattr(app, "skips", skips)
        return zoo

    demo = app.build_demo(found, load)
    handlers = {fn.name: fn.fn for fn in demo.fns.values()}
    upload = {"path": str(bird_jpg)}
    monkeypatch.setattr(app.uploads, "checked_upload", lambda path: Path(path))
    calls = {
        "classify_ui": (str(bird_jpg), None), "inside_ui": ("net", str(bird_jpg)), "translation_ui": (str(bird_jpg), 2),
        "rf_controls": ("net",), "rf_sliders": ("net", "pool1"), "rf_ui": ("net", "pool1", 3, 3, str(bird_jpg)),
        "rf_click": ("net", "pool1", gr.SelectData(None, {"index": [10, 20], "value": None})),
        "sharing_ui": (32, 3, 16, 3), "compare_ui": (), "classify": (upload,), "filters": ("net",),
        "feature_maps": ("net", upload), "translation": (upload,), "receptive_field": ("net", "pool1", 3, 3),
        "compare": (), "skips_ui": (3,), "skip_connections": (3,),
    }
    assert set(calls) <= set(handlers)
    for name, args in calls.items():
        for module in ("inference", "anatomy", "skips"):
            monkeypatch.setattr(app, module, None)
        result = handlers[name](*args)
        assert result is not None and app.inference is inference and app.skips is skips, name


def _run_app(tmp_path, **settings) -> subprocess.CompletedProcess:
    """The real `python space/app.py`, offline, on a free port, with ``settings`` added to its environment; it is
    expected to stop by itself."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path), "GRADIO_ANALYTICS_ENABLED": "False",
           "GRADIO_SERVER_PORT": str(free_port()), **settings}
    app_py = Path(__file__).resolve().parents[1] / "space" / "app.py"
    return subprocess.run([sys.executable, str(app_py)], capture_output=True, text=True, timeout=120, env=env)


def test_a_space_whose_nets_fail_to_load_stops_with_the_error(tmp_path):
    """Not a broken net (that one is only unavailable) but load_nets failing, here on a torch that cannot be imported:
    the real app stops its server and exits with status 1, rather than serve a page that cannot classify."""
    broken = tmp_path / "broken" / "torch"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('this torch is broken')\n")
    result = _run_app(tmp_path, PYTHONPATH=str(broken.parent))
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Loading the nets failed: ImportError: this torch is broken" in result.stderr
    assert "Running on local URL:  http://127.0.0.1:" in result.stdout  # it had served its page first


@pytest.mark.parametrize("name, value, message", [
    ("CONVHUB_TORCH_THREADS", "many", "CONVHUB_TORCH_THREADS must be a whole number from 1 to 256, not 'many'"),
    ("CONVHUB_TORCH_THREADS", "2147483648", "CONVHUB_TORCH_THREADS must be a whole number from 1 to 256"),
    ("CONVHUB_QUEUE_SIZE", "0", "CONVHUB_QUEUE_SIZE must be a whole number from 1 to 1,000,000, not '0'"),
    ("CONVHUB_QUEUE_SIZE", "9" * 400, "CONVHUB_QUEUE_SIZE must be a whole number from 1 to 1,000,000, not '999"),
    ("CONVHUB_SESSIONS", "1.5", "CONVHUB_SESSIONS must be a whole number from 1 to 1,000,000, not '1.5'"),
    ("CONVHUB_CLASSIFY_CONCURRENCY", "-4", "CONVHUB_CLASSIFY_CONCURRENCY must be a whole number from 1 to 1,024"),
    ("CONVHUB_HUB_DEADLINE", "nan", "CONVHUB_HUB_DEADLINE must be a number from 1 to 86,400, not 'nan'"),
    ("CONVHUB_HUB_DEADLINE", "1e10", "CONVHUB_HUB_DEADLINE must be a number from 1 to 86,400, not '1e10'"),
    ("CONVHUB_MAX_UPLOAD", "10 parsecs", "CONVHUB_MAX_UPLOAD must be a size such as 10mb"),
    ("CONVHUB_MAX_UPLOAD", "0mb", "CONVHUB_MAX_UPLOAD must be a size such as 10mb"),
    ("CONVHUB_MAX_UPLOAD", "999999999999gb", "CONVHUB_MAX_UPLOAD must be a size such as 10mb"),  # a 500 on every page
    ("CONVHUB_MAX_UPLOAD", "10mb\t", "CONVHUB_MAX_UPLOAD must be a size such as 10mb"),  # Gradio's launch refused it
    ("CONVHUB_UPLOAD_CACHE", "lots", "CONVHUB_UPLOAD_CACHE must be a size such as 10mb"),
    ("CONVHUB_CLIENT_BURST", "-1", "CONVHUB_CLIENT_BURST must be a whole number from 0 to 1,000,000, not '-1'"),
    ("CONVHUB_CLIENT_RATE", "0", "CONVHUB_CLIENT_RATE must be a number from 0.01 to 1,000,000, not '0'"),
    ("CONVHUB_CLIENT_UPLOADS", "much", "CONVHUB_CLIENT_UPLOADS must be a size such as 10mb"),
    # the largest upload (a body of up to twice the 10 MB limit) would never fit in a client's share
    ("CONVHUB_CLIENT_UPLOADS", "40mb", "CONVHUB_CLIENT_UPLOADS must be at least four times CONVHUB_MAX_UPLOAD and "
                                       "2 MB (42 MB), not '40mb'"),
    ("CONVHUB_CLIENT_AT_ONCE", "0", "CONVHUB_CLIENT_AT_ONCE must be a whole number from 1 to 1,000,000, not '0'"),
    ("CONVHUB_UNREAD_S", "0", "CONVHUB_UNREAD_S must be a number from 1 to 86,400, not '0'"),
    ("CONVHUB_CLIENT_STREAMS", "lots", "CONVHUB_CLIENT_STREAMS must be a whole number from 1 to 1,000,000, not 'lots'"),
    ("CONVHUB_MAX_STREAMS", "-1", "CONVHUB_MAX_STREAMS must be a whole number from 1 to 10,000,000, not '-1'"),
    ("CONVHUB_HEADERS_S", "0", "CONVHUB_HEADERS_S must be a number from 1 to 3,600, not '0'"),
    ("CONVHUB_BODY_S", "forever", "CONVHUB_BODY_S must be a number from 1 to 3,600, not 'forever'"),
    ("CONVHUB_SEND_S", "-5", "CONVHUB_SEND_S must be a number from 1 to 3,600, not '-5'"),
    ("CONVHUB_CLIENT_ADDRESS", "cookie", "CONVHUB_CLIENT_ADDRESS must be connection or x-forwarded-for, not 'cookie'"),
    ("GRADIO_SERVER_PORT", "http", "GRADIO_SERVER_PORT must be a whole number from 1 to 65,535, not 'http'"),
    ("GRADIO_SERVER_PORT", "70000", "GRADIO_SERVER_PORT must be a whole number from 1 to 65,535, not '70000'"),
    # huggingface_hub parses it at import: a traceback from Gradio's import of it
    ("HF_ENDPOINT", "http://[::1", "HF_ENDPOINT must be the Hub's http(s) URL"),
    ("HF_ENDPOINT", "ftp://127.0.0.1", "HF_ENDPOINT must be the Hub's http(s) URL"),  # "the Hub cannot be reached"
    # the Hub repos of the nets: each net was "unavailable" from the Hub, the bundled weights served
    ("CONVHUB_NAMESPACE", "alice/team", "CONVHUB_NAMESPACE 'alice/team' cannot name a Hub repo"),
    ("CONVHUB_REVISION", "v 1", "CONVHUB_REVISION 'v 1' is not a branch name git accepts"),
    # the nets came from the Hub or the bundle, and only the Compare tab said "not in CONVHUB_MODELS_DIR"
    ("CONVHUB_MODELS_DIR", "/nonexistent/models", "CONVHUB_MODELS_DIR must be a folder of the nets' save_pretrained "
                                                  "folders; '/nonexistent/models' is not a folder"),
    ("CONVHUB_MODELS_DIR", "/tmp/" + "a" * 300,  # an OSError traceback from Path.is_dir
     "CONVHUB_MODELS_DIR '/tmp/aaaa"),
    ("CONVHUB_MODELS_DIR", str(Path(__file__).resolve().parents[1] / "space"),  # not space/models: its parent
     f"CONVHUB_MODELS_DIR {str(Path(__file__).resolve().parents[1] / 'space')!r} holds none of the nets: it must "
     "hold a save_pretrained folder per net, named as the zoo names it (fc, net, net_width,"),
])
def test_a_setting_the_space_cannot_use_stops_it_before_it_serves_with_one_line_naming_it(tmp_path, name, value,
                                                                                           message):
    """An operator's typo in a Space setting: no traceback, no page served with a limit nobody chose, and the log's
    last line says which variable and what it must be."""
    result = _run_app(tmp_path, **{name: value})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {message}"), result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "Running on" not in result.stdout


@pytest.mark.parametrize("taken", ["port", "address"])
def test_a_space_that_cannot_listen_says_why_in_one_line(tmp_path, taken):
    """Its port already served by another program, or an address that is not this machine's: the system's reason as
    the last line, no traceback."""
    import socket

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        host = "127.0.0.1" if taken == "port" else "192.0.2.1"  # TEST-NET-1: no machine's own address
        if taken == "address":
            other.close()  # the port free: only the address is wrong
        result = _run_app(tmp_path, GRADIO_SERVER_NAME=host, GRADIO_SERVER_PORT=str(port))
    assert result.returncode == 1
    reason = "Address already in use" if taken == "port" else "Cannot assign requested address"  # not Gradio's
    assert result.stderr.strip().splitlines()[-1] == f"error: cannot listen on {host}:{port}: {reason}", \
        result.stderr[-2000:]  # "Cannot find empty port in range", for an address too
    assert "Traceback" not in result.stderr and "Running on" not in result.stdout


def test_sigterm_closes_the_server_once_and_still_stops_when_closing_fails(monkeypatch, capsys):
    """SIGTERM once the server is up (app._close): a second one while it closes is ignored, and a close that raises
    still ends block_thread instead of escaping from the signal handler with a traceback."""
    import signal

    import app

    def broken_close(verbose=True):
        raise RuntimeError("queue already gone")

    monkeypatch.setattr(app.demo, "close", broken_close)
    monkeypatch.setattr(app.demo, "is_running", True)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        app._close(signal.SIGTERM, None)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert app.demo.is_running is False
    captured = capsys.readouterr()
    assert "SIGTERM: closing the server." in captured.out
    assert "closing the server failed: RuntimeError: queue already gone" in captured.err


def test_main_bounds_the_sessions_gradio_keeps(monkeypatch):
    """Gradio keeps a copy of the page's configs per session (~120 KB here; 10,000 sessions by default): main() hands
    it the Space's bound, with the queue and upload limits."""
    import signal

    import app

    launched = {}

    class Queue:
        def launch(self, **kwargs):
            launched.update(kwargs)

    monkeypatch.setattr(app.demo, "queue", lambda **kwargs: launched.update(queue=kwargs) or Queue())
    caches, installed = [], []
    monkeypatch.setattr(app.limits.UploadCache, "sweep_in_background", lambda cache: caches.append(cache))
    monkeypatch.setattr(app.logs, "install", installed.append)  # it would patch this process's Gradio for good
    deadlines = []
    monkeypatch.setattr(app.connections, "install", lambda *seconds: deadlines.append(seconds))  # uvicorn's too
    previous = signal.getsignal(signal.SIGTERM)
    try:
        app.main()
    finally:
        signal.signal(signal.SIGTERM, previous)
        app.NETS.start().exception(timeout=300)  # the nets main started loading: torch's threads, torn down mid-load
        # at the interpreter's exit, aborted the run (134, "terminate called without an active exception")
    assert deadlines == [(app.HEADERS_S, app.BODY_S, app.SEND_S)] == [(30.0, 120.0, 60.0)]
    assert launched["state_session_capacity"] == app.SESSIONS == 1000
    assert launched["queue"]["max_size"] == app.QUEUE_SIZE and launched["max_file_size"] == app.MAX_UPLOAD
    # the upload cache's sweeper keeps the examples' copies there (the gallery broke when uploads filled it)
    [cache] = caches
    examples = sorted(p.name for p in (Path(app.__file__).parent / "examples").iterdir())
    assert sorted(Path(path).name for path in cache.keep()) == examples
    # a request Gradio fails on is answered and logged by the outermost middleware, with the log main() installed
    [failures, middleware] = launched["app_kwargs"]["middleware"]
    assert failures.cls is app.logs.Failures and failures.kwargs == {"log": installed[0]}
    # request bodies are bounded by the middleware that also keeps uploads within that cache
    assert middleware.cls is app.limits.RequestLimits
    clients = middleware.kwargs.pop("clients")
    # event streams: half the file descriptors, raised to their hard limit (each stream holds one), at most 10,000
    import resource

    assert middleware.kwargs == {"cache": cache, "max_file_bytes": app.MAX_BODY, "body_s": 120.0, "max_streams": max(
        16, min(resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 2, app.limits.STREAMS_AT_MOST))}
    # and each client's requests and share of that cache (an eighth of it), by the connection's address off Spaces
    assert (clients.requests.capacity, clients.requests.per_second) == (app.CLIENT_BURST, app.CLIENT_RATE) == (60, 5)
    assert clients.at_once == app.CLIENT_AT_ONCE == 8 and not clients.forwarded
    assert (clients.streams, clients.unread_s) == (app.CLIENT_STREAMS, app.UNREAD_S) == (32, 60)
    assert clients.upload_bytes == app.CLIENT_UPLOADS == 2**30 // 8 and clients.window_s == cache.min_age_s
    assert clients.bytes.capacity + clients.bytes.per_second * clients.window_s == clients.upload_bytes  # per window
    assert clients.queued("198.51.100.1") == 0  # read from Gradio's queue (tested with a real one in the server's)
    assert cache.max_bytes == app.UPLOAD_CACHE == 2**30
    # what a sweep deletes leaves Gradio's set of uploads too (it only drops the files it deletes itself)
    upload = str(cache.folder / ("0" * 64) / "bird.png")
    app.demo.upload_file_set.add(upload)
    cache.forget([upload])
    assert upload not in app.demo.upload_file_set


def test_the_upload_sweeper_deletes_the_oldest_files_but_never_the_pages_own(tmp_path):
    """It counts what the cache takes on disk, folders included (Gradio gives each upload one), and removes the
    folders it empties: 1000 empty files per upload took 8 MB of disk each while their bytes counted nothing."""
    import os

    import uploads

    now = 10_000.0
    paths = {}
    for name, age in [("example.jpg", 900), ("old.png", 800), ("middle.png", 500), ("young.png", 60)]:
        paths[name] = tmp_path / name[:3] / name
        paths[name].parent.mkdir()
        paths[name].write_bytes(b"x" * 100)
        for path in (paths[name], paths[name].parent):
            os.utime(path, (now - age, now - age))
    on_disk = {path: uploads.disk_bytes(path.lstat()) for path in tmp_path.rglob("*")}
    assert on_disk[paths["young.png"]] >= 100
    young = on_disk[paths["young.png"]] + on_disk[paths["young.png"].parent]
    left = uploads.sweep(tmp_path, max_bytes=young + on_disk[paths["old.png"]], min_age_s=120, now=now,
                         keep={str(paths["example.jpg"])})
    # young: maybe being read
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "exa", "exa/example.jpg", "you", "you/young.png"]
    assert left == young + on_disk[paths["example.jpg"].parent]  # the kept file is not counted, its folder is


def test_a_full_upload_cache_sweeps_at_once_and_refuses_only_while_its_files_are_young(tmp_path):
    """Between two sweeps of the background sweeper, uploads could fill the disk: the cache now sweeps as soon as an
    upload finds it full, and refuses uploads only while what fills it is too young to delete."""
    import os
    import threading
    import time

    import limits
    import uploads

    (tmp_path / "example.jpg").write_bytes(b"x" * 100)  # the page's own: never deleted, never counted
    names = ("a.png", "b.png", "c.png", "d.png")
    for name in names:
        (tmp_path / name).write_bytes(b"x" * 100)
    size = uploads.disk_bytes((tmp_path / "a.png").lstat())
    forgotten = []
    cache = limits.UploadCache(tmp_path, max_bytes=3 * size, min_age_s=120,
                               keep=lambda: {str(tmp_path / "example.jpg")}, forget=forgotten.extend)
    assert cache.received(3 * size) and not cache.received(size)  # four uploads, as the middleware counts them
    assert not cache.has_room()  # swept, but every file is young: nothing could go
    assert sorted(p.name for p in tmp_path.iterdir()) == [*names, "example.jpg"]
    assert cache.bytes == 4 * size
    assert "try again in a minute" in cache.full_message()
    old = time.time() - 600
    for name in ("a.png", "b.png"):
        os.utime(tmp_path / name, (old, old))
    assert not cache.has_room()  # at most one sweep started every 5 s
    cache._swept_at -= 5
    with cache._sweeping:  # a sweep of a large cache is running: no other request waits for it or starts one
        answer = []
        other = threading.Thread(target=lambda: answer.append(cache.has_room()))
        other.start()
        other.join(timeout=10)
        assert answer == [False]
    # the old uploads went: down to half the bound if it can, or a full cache takes no upload again, ever
    assert cache.has_room()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "d.png", "example.jpg"]
    assert cache.bytes == 2 * size and forgotten == [str(tmp_path / "a.png"), str(tmp_path / "b.png")]


@contextlib.contextmanager
def serving(app):
    """``app`` served by uvicorn on a free port of 127.0.0.1, in a thread; yields the port."""
    import threading

    import uvicorn
    from conftest import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def upload_route(tmp_path):
    """The middleware over real HTTP, around a stand-in for Gradio's upload route that reads the body and answers
    as Gradio does: the list of files it kept (one if the body holds b"keep", else a refusal). Yields (post, cache):
    post(*pieces, pause_s=) sends a 1000-byte multipart body in pieces and returns (status, body)."""
    import http.client
    import socket

    import limits
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    async def upload(request):
        body = await request.body()
        return JSONResponse(["kept.png"]) if b"keep" in body else PlainTextResponse("not an upload", 400)

    cache = limits.UploadCache(tmp_path, 2**30)
    # placed as app.py places it: a user middleware, inside Starlette's handler of server errors
    app = Starlette(routes=[Route("/gradio_api/upload", upload, methods=["POST"])], middleware=[
        Middleware(limits.RequestLimits, cache=cache, max_file_bytes=2**20, body_s=1.0)])

    def post(*pieces: bytes, pause_s: float = 0.0) -> tuple[int, bytes]:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
            connection.sendall(b"POST /gradio_api/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
                               b"Content-Type: multipart/form-data; boundary=b\r\n\r\n")
            for piece in pieces:
                connection.sendall(piece)
                time.sleep(pause_s)
            answer = http.client.HTTPResponse(connection)
            answer.begin()
            return answer.status, answer.read()

    with serving(app) as port:
        yield post, cache


def test_an_upload_body_that_drips_is_cut_at_its_deadline(upload_route):
    """A body sending a byte now and then kept its file young, so never swept, and uploads refused for as long as
    the connection lasted (uvicorn has no body timeout). Here with a 1 s deadline."""
    post, _ = upload_route
    assert post(b"keep".ljust(1000)) == (200, b'["kept.png"]')
    assert post(b"x" * 10, b"x" * 10, pause_s=0.7) == (408, b"An upload must arrive within 1 s.")  # then nothing


def test_an_upload_is_charged_for_every_part_it_brings(upload_route):
    """Each part is charged 8 KB as it arrives (a file and its folder), and the charge stands whatever the answer:
    given back for refused uploads, it let Gradio's leftovers (files kept before a 400, parts behind "200 []") put
    191 MB on a 20 MB cache between two sweeps."""
    import limits

    post, cache = upload_route
    three_parts = b"--b\r\n\r\n\r\n" * 3 + b"--b--"
    assert post(three_parts.ljust(1000))[0] == 400
    assert cache.bytes == 1000 + 4 * limits.FILE_BYTES  # three parts and the closing delimiter
    # stopped here at its fifth file, in a later piece: the first four are counted
    four, more = b"--b\r\n\r\n\r\n" * 4, (b"--b\r\n\r\n\r\n" * 2).ljust(1000 - 36)
    assert post(four, more, pause_s=0.3) == (413, b"An upload request may carry at most 4 files.")
    assert cache.bytes == 1000 + 4 * limits.FILE_BYTES + len(four) + 4 * limits.FILE_BYTES


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_clients_bucket_refills_at_its_rate_and_a_debt_is_paid_before_more():
    import limits

    clock = Clock()
    buckets = limits.ClientBuckets(capacity=10, per_second=2, clock=clock)
    assert buckets.level("a") == 10 and buckets.wait_s("a", 1) == 0
    assert buckets.take("a", 10) == 0 and buckets.wait_s("a", 1) == 0.5
    assert buckets.level("b") == 10  # another client's own
    clock.now += 1
    assert buckets.level("a") == 2 and buckets.take("a", 7) == -5  # bytes as they arrive: into debt
    assert buckets.wait_s("a", 1) == 3.0  # the debt, then the byte asked for
    assert buckets.wait_s("a", 50) == 7.5  # never more than a full bucket is waited for
    clock.now += 100
    assert buckets.level("a") == 10  # full, not more


def test_made_up_addresses_cost_memory_only_up_to_a_bound():
    """A client that sends a new X-Forwarded-For (or IPv6 address) with every request gets a full bucket each time,
    as a new client would; the buckets remembered stay bounded, the least recently charged forgotten first."""
    import limits

    buckets = limits.ClientBuckets(capacity=1, per_second=0.001, max_clients=3, clock=Clock())
    for client in "abcd":
        buckets.take(client, 1)
    assert buckets.level("a") == 1 and all(buckets.wait_s(c, 1) for c in "bcd")
    assert len(buckets._levels) == 3


@pytest.mark.parametrize("forwarded, peer, header, client", [
    (False, "203.0.113.9", None, "203.0.113.9"),
    (False, "203.0.113.9", "198.51.100.1", "203.0.113.9"),  # a client's own header is not its address
    (True, "10.16.3.80", "198.51.100.1, 10.0.0.1", "198.51.100.1"),  # Spaces' proxy connects from its own address
    (True, "10.16.3.80", " 198.51.100.1:5000", "198.51.100.1"),
    (True, "10.16.3.80", "[2001:db8:1:2:3::9]:443", "2001:db8:1:2::/64"),  # a machine is given a /64
    (True, "10.16.3.80", "::ffff:198.51.100.1", "198.51.100.1"),
    (True, "10.16.3.80", "fe80::1%eth0", "fe80::/64"),
    (True, "10.16.3.80", "unknown, 198.51.100.1", "10.16.3.80"),  # not an address: the connection's
    (True, "10.16.3.80", None, "10.16.3.80"),
    (True, "10.16.3.80", "127.0.0.1", "10.16.3.80"),  # a header cannot make a client this machine, never limited
    (False, "2001:db8:1:2:ffff::1", None, "2001:db8:1:2::/64"),
    (False, None, None, ""),
    (False, "::1", None, None),  # this machine: not limited
    (False, "127.0.0.1", "127.0.0.1", "127.0.0.1"),  # where uvicorn trusts every proxy, the header is anyone's
])
def test_a_client_is_its_address(forwarded, peer, header, client):
    import limits

    per_client = limits.PerClient(30, 3, 2**20, 120, forwarded=forwarded)
    scope = {"client": (peer, 5000) if peer else None,
             "headers": [(b"x-forwarded-for", header.encode())] if header else []}
    assert per_client.address(scope) == client


def test_a_client_over_its_requests_or_its_upload_share_is_told_when_to_come_back():
    import limits

    clock = Clock()
    clients = limits.PerClient(burst=2, per_second=0.5, upload_bytes=2000, window_s=100, clock=clock)
    assert clients.admit("a", 10, upload=False) is None and clients.admit("a", 10, upload=False) is None
    refused = clients.admit("a", 10, upload=False)
    assert refused.response.status_code == 429 and refused.response.headers["Retry-After"] == "2"
    assert json.loads(refused.response.body) == {"detail": str(refused), "error": str(refused)}  # the page shows it
    assert str(refused) == ("Too many requests from your address: the Space takes 2 at once from one address, then "
                            "0.5 a second. Try again in 2 s.")
    # an upload's Content-Length is taken as it starts: two started side by side cannot both pass one check
    assert clients.admit("b", 600, upload=True) is None
    refused = clients.admit("b", 600, upload=True)  # 400 of the 1000 at once left; 10 bytes a second come back
    assert refused.response.media_type.startswith("text/plain") and refused.response.headers["Retry-After"] == "20"
    assert str(refused) == ("Your uploads have filled your share of the Space's upload room (2 KB every 100 s). Try "
                            "again in 20 s.")
    assert clients.requests.level("b") == 1  # a refused request is not charged


def test_a_client_may_have_only_so_many_requests_waiting_or_running():
    """Requests cost what they ask for (a 160 KB PNG of 49 MP takes 1.5 s to decode): within its rate, one address
    queued work faster than the Space did it, and every other visitor waited behind it."""
    import limits

    queued = {"a": 0}
    clients = limits.PerClient(burst=100, per_second=100, upload_bytes=10**6, window_s=100, at_once=3,
                               queued=lambda client: queued.get(client, 0), clock=Clock())
    assert clients.admit("a", 0, upload=False) is None  # an MCP call, answered while its tool runs
    queued["a"] = 2  # two events in Gradio's queue
    refused = clients.admit("a", 0, upload=False)
    assert str(refused) == ("Your address has 3 requests waiting, running or open (an answer is open until it is "
                            "read, an MCP session until its client closes it), as many as the Space takes from one "
                            "address; wait for one to end. Try again in 2 s.")
    assert clients.admit("b", 0, upload=False) is None  # others are served
    assert clients.admit("a", 0, upload=False, cap=False, hold=False) is None  # a Stop (/cancel) is taken
    clients.done("a")
    assert clients.admit("a", 0, upload=False) is None and clients.answering == {"a": 1, "b": 1}


def test_unread_answers_are_counted_then_forgotten_and_read_sessions_are_not_kept():
    """count_queued walks Gradio's records of answers not yet read. One left unread for unread_s is forgotten with its
    session; this machine's are never counted or forgotten; and the empty record Gradio keeps for good of each
    session read (one per API call) is dropped, or the walk, once a request, would grow with every call."""
    from types import SimpleNamespace

    import limits

    clock, client = Clock(), "198.51.100.1"
    clients = limits.PerClient(burst=100, per_second=100, upload_bytes=10**6, window_s=100, at_once=3, unread_s=60,
                               clock=clock)
    pending = {"read": set(), "unread": {"e1", "e2"}, "running": {"e3"}, "local": {"e4"}}
    answers = {"unread": "two answers", "running": "", "local": "an answer"}
    running = SimpleNamespace(_id="e3", request=SimpleNamespace(scope={"client": (client, 1)}))
    queue = SimpleNamespace(event_queue_per_concurrency_id={}, active_jobs=[[running]],
                            pending_event_ids_session=pending, pending_messages_per_session=answers)
    limits.count_queued(SimpleNamespace(_queue=queue), clients)
    for event_id in ("e1", "e2", "e3"):
        clients.joined(event_id, client)
    assert clients.queued(client) == 3 and "read" not in pending  # one running, two unread
    clock.now += 30
    pending["unread"].discard("e1")  # read
    assert clients.queued(client) == 2
    clock.now += 31  # e2 has waited 61 s unread: its session goes, answers and all
    assert clients.queued(client) == 1 and "unread" not in pending and "unread" not in answers
    assert pending.keys() == {"running", "local"} and answers.keys() == {"running", "local"}
    assert set(clients.events) == {"e3"}  # what it knew of e1 and e2 is gone too


def test_a_stalled_request_body_gives_its_place_back_at_its_deadline(tmp_path):
    """A JSON body that stops arriving held one of its address's requests for as long as the connection lasted (8
    idle sockets, and the address was refused everything). At the body deadline the app sees a disconnect."""
    import http.client
    import socket

    import limits
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def join(request):
        return JSONResponse({"size": len(await request.body())})

    clients = limits.PerClient(100, 100, 10**6, 120, at_once=1)
    app = Starlette(routes=[Route("/gradio_api/queue/join", join, methods=["POST"])], middleware=[
        Middleware(limits.RequestLimits, cache=limits.UploadCache(tmp_path, 2**30), max_file_bytes=2**20, body_s=3.0,
                   clients=clients)])

    def post(port: int) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("POST", "/gradio_api/queue/join", b"{}", {"X-Forwarded-For": "198.51.100.1"})
        status = connection.getresponse().status
        connection.close()
        return status

    with serving(app) as port:
        stalled = socket.create_connection(("127.0.0.1", port), timeout=30)
        stalled.sendall(b"POST /gradio_api/queue/join HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                        b"X-Forwarded-For: 198.51.100.1\r\n\r\n{")  # then nothing more
        statuses, taken_in_by = [post(port)], time.monotonic() + 1.5  # half the body deadline
        while statuses[-1] == 200 and time.monotonic() < taken_in_by:  # until the server has the stalled request
            time.sleep(0.05)
            statuses.append(post(port))
        while statuses[-1] == 429 and len(statuses) < 100:  # refused while the stalled body holds its place
            time.sleep(0.2)
            statuses.append(post(port))
        assert 429 in statuses and statuses[-1] == 200, statuses
        stalled.close()


def test_upload_progress_nobody_follows_is_dropped():
    """Gradio keeps an event per upload_id for good, and a tracker until the page follows it to the end: 2 KB per
    upload nobody followed (40,000 took the Space from 803 to 887 MB). Called a minute apart, after each sweep."""
    import limits
    from gradio.route_utils import FileUploadProgress

    progress = FileUploadProgress()
    stale = limits.StaleUploadProgress(progress)
    progress.track("followed")
    progress.track("abandoned")  # an upload nobody follows
    stale()
    progress.stop_tracking("followed")  # the page read it to the end: its event stays, in Gradio
    progress.track("new")
    stale()
    assert set(progress._statuses) == {"abandoned", "new"} and "followed" not in progress._signals
    stale()  # "abandoned" was tracked at the last two calls: past any upload's deadline
    assert set(progress._statuses) == {"new"}
    stale()  # "new" too, now; and the events of both
    assert progress._statuses == {} and dict(progress._signals) == {}


def test_api_functions_keep_their_signatures_for_the_docs_and_mcp():
    import inspect

    import app

    assert list(inspect.signature(app.api_errors(lambda image, net=1: None)).parameters) == ["image", "net"]


def test_output_images_are_written_once_by_content_and_bounded_by_age_and_size(tmp_path):
    import os

    import uploads

    store = uploads.ImageStore(max_age_s=60, max_bytes=4000)
    pixels = np.zeros((4, 4, 3), np.uint8)
    first = store.save(pixels)
    assert store.save(pixels.copy()) == first and np.array_equal(np.asarray(Image.open(first)), pixels)
    other = store.save(pixels + 1)
    assert other != first and sorted(p.suffix for p in store.folder.iterdir()) == [".png", ".png"]
    os.utime(first, (0, 0))  # an old file goes, a fresh one stays
    store.prune()
    assert [str(p) for p in store.folder.iterdir()] == [other]
    rng = np.random.default_rng(0)  # noise does not compress: ~2 KB a file
    paths = [store.save(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)) for _ in range(20)]
    size = sum(p.stat().st_size for p in store.folder.iterdir())
    assert size <= 4000 and Path(paths[-1]).exists()  # the newest survive
    folder = store.folder
    store.close()
    assert not folder.exists()


def test_only_uploads_and_examples_are_accepted(tmp_path, monkeypatch):
    import os

    import uploads

    cache = tmp_path / "gradio-cache"
    (cache / "abc").mkdir(parents=True)
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    upload = cache / "abc" / "bird.png"
    Image.new("RGB", (8, 8)).save(upload)
    example = next(uploads.EXAMPLES_DIR.glob("*.jpg"))
    assert uploads.checked_upload(str(upload)) == upload.resolve()
    assert uploads.checked_upload(example) == example.resolve()

    outside = tmp_path / "secret.png"
    Image.new("RGB", (8, 8)).save(outside)
    os.mkfifo(cache / "abc" / "pipe.png")
    (cache / "abc" / "link.png").symlink_to(outside)
    refused = [outside, "/etc/passwd", tmp_path / "missing.png", cache / "abc" / "pipe.png", cache / "abc",
               cache / "abc" / "link.png", f"{cache}/abc/../../secret.png", "http://127.0.0.1:1/x.png", "a\x00b", ""]
    for path in refused:
        with pytest.raises(uploads.UntrustedFileError) as info:
            uploads.checked_upload(path)
        assert str(info.value) == uploads.NOT_AN_UPLOAD  # the same words whatever the path: nothing is revealed


def test_a_long_run_of_blocks_is_summarised_in_the_layer_table():
    import figures

    text = figures.layers_markdown(anatomy.stages(convhub.create("net_res_deep100")))
    assert "| block 1 | 32×16×16 | 9,280 |" in text and "| block 100 | 32×16×16 | 9,280 |" in text
    assert "| block 4 … 97 (94 blocks) | 32×16×16 each | 872,320 |" in text
    assert "block 50 |" not in text and "**994,530**" in text
    assert len(text.splitlines()) < 20


@pytest.mark.parametrize("front_matter", [
    "convhub: {val_accuracy: high}",
    "convhub: just text",
    "convhub: {epochs: '[click](https://evil.example)'}",
    "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nconvhub: {epochs: [*b, *b, *b, *b]}",
    "convhub: {val_accuracy: 0.9",  # not YAML
    # model-index through aliases: 40 x 40 x 40 metrics from 6 KB (the Hub's card parser built one object each)
    "convhub: {model_name: net, val_accuracy: 0.9}\nmodel-index:\n- &m\n  name: x\n  results:\n  - &r\n"
    "    task: {type: image-classification}\n    dataset: {type: d, name: d}\n"
    "    metrics: [&k {type: accuracy, value: 0.5}" + ", *k" * 39 + "]\n" + "  - *r\n" * 39 + "- *m\n" * 39,
])
def test_a_hostile_model_card_costs_only_its_metrics(models_dir, front_matter):
    """The Space starts, serves the net, and shows no metric (or markup) from the card."""
    import figures

    (models_dir / "net" / "README.md").write_text(f"---\n{front_matter}\n---\n# card\n")
    [net] = zoo_loader.load_zoo(["net"], models_dir=models_dir)
    assert net.available and net.record is None and "model card ignored" in net.source
    rows = inference.compare_rows([net])
    assert rows[0]["val_accuracy"] is None and rows[0]["epochs"] is None
    assert "evil" not in figures.compare_markdown(rows)


def test_a_huge_model_card_is_not_parsed(models_dir):
    (models_dir / "net" / "README.md").write_text("---\nconvhub: {}\n---\n" + "x" * 300_000)
    [net] = zoo_loader.load_zoo(["net"], models_dir=models_dir)
    assert net.available and "is 300,0" in net.source and "at most 262,144" in net.source


def test_large_uploads_are_reduced_right_after_decoding(tmp_path):
    big = tmp_path / "big.png"
    Image.new("RGBA", (3000, 2000), (10, 200, 30, 255)).save(big)
    opened = inference.open_upload(big)
    assert opened.size == (286, 286)  # the centred square, reduce(7), rounding up: no side under 256
    assert torch.allclose(inference.load_input(big), inference.TRANSFORMS(Image.open(big)).unsqueeze(0), atol=0.02)
    rotated = tmp_path / "rotated.png"  # the EXIF orientation survives the reduction
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = Image.new("RGB", (2400, 1200))
    stored.paste((255, 255, 255), (0, 0, 1200, 1200))  # white left half as stored: the top half once upright
    stored.save(rotated, exif=exif)
    assert inference.open_upload(rotated).size == (300, 300)  # turned upright, its centred square reduced 4x
    assert torch.allclose(inference.load_input(rotated), inference.TRANSFORMS(Image.open(rotated)).unsqueeze(0),
                          atol=0.02)


def test_a_32_bit_greyscale_upload_is_scaled_by_its_whole_range_not_its_centres(tmp_path):
    """to_rgb scales 32-bit greyscale to 8 bits when the image's values go past 255: cut to its square first, a
    centre of 200s in a frame of 60,000s was seen 205/255 brighter in the Space than by predict()."""
    pixels = np.full((1001, 3001), 60000, np.int32)
    pixels[:, 1000:2001] = 200
    path = tmp_path / "frame.tif"
    Image.fromarray(pixels, "I").save(path)
    assert torch.allclose(inference.load_input(path), inference.TRANSFORMS(Image.open(path)).unsqueeze(0), atol=1e-6)


def test_a_thin_upload_is_cut_to_its_square_while_the_decode_is_bounded(tmp_path):
    """255 x 196,000 is within the pixel limit, and its short side is under what reduce() shrinks: it went on at
    full size through every mode conversion, ~1 GB a request and 16 requests at a time. Peak memory over the
    process's own before, in a process of its own."""
    thin = tmp_path / "thin.png"
    Image.new("RGBA", (255, 196_000), (200, 30, 30, 128)).save(thin)
    assert inference.open_upload(thin).size == (255, 255)
    assert torch.allclose(inference.load_input(thin), inference.TRANSFORMS(Image.open(thin)).unsqueeze(0), atol=0.02)
    _, peak_kb = peak_memory("sys.path.insert(0, 'space'); import inference", "inference.load_input(sys.argv[1])", thin)
    assert peak_kb < 400 * 1024  # KB: ~200 MB is the decode itself; it was ~960 MB


@pytest.mark.parametrize("mode", ["P", "1", "I;16"])
def test_large_uploads_reduce_does_not_take_are_converted_while_the_decode_is_bounded(tmp_path, mode):
    """reduce() refuses these modes: the full-size image went on to be converted by every request at once (six 6 KB
    palette PNGs of 49 MP took the Space from 0.7 to 5 GB)."""
    big = tmp_path / "big.png"
    image = Image.new(mode, (3000, 2000), 1)
    if mode == "P":
        image.info["transparency"] = 0
    image.save(big)
    opened = inference.open_upload(big)
    assert opened.mode == "RGB" and opened.size == (286, 286)
    assert torch.allclose(inference.load_input(big), inference.TRANSFORMS(Image.open(big)).unsqueeze(0), atol=0.02)


def test_a_hub_servers_words_are_shown_as_text_not_markdown():
    """Its error message is shown on the Compare tab: an image in it loaded for every visitor, a link showed."""
    from markdown_it import MarkdownIt

    message = "403 Forbidden: ![pixel](http://attacker.example/p.png) [log in again](http://attacker.example) <b>x</b>"
    html = MarkdownIt().render(zoo_loader.as_plain_text(message))
    assert "<img" not in html and "<a " not in html and "<b>" not in html
    assert "![pixel](http://attacker.example/p.png)" in html  # every character shown as it is


def test_a_password_in_hf_endpoint_is_never_shown(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_ENDPOINT", f"http://mirror:S3cret@127.0.0.1:{free_port()}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(zoo_loader, "BUNDLED_DIR", tmp_path)
    convhub.hub._probe_cache.clear()
    nets = zoo_loader.load_zoo(["net"])
    line = zoo_loader.sources_summary(nets)
    assert "Hub unreachable (http://127.0.0.1:" in line and "S3cret" not in line + nets[0].source
    with pytest.raises(convhub.ConvHubError) as info:
        convhub.load("someone/convhub-net")
    assert "S3cret" not in str(info.value) and "http://127.0.0.1:" in str(info.value)


def test_served_copies_compute_what_the_books_nets_do():
    bundled = Path(__file__).resolve().parents[1] / "space" / "models"
    nets = inference.prepare_for_serving(zoo_loader.load_zoo(models_dir=bundled))
    x = torch.randn(5, 3, 32, 32)
    for net in nets:
        with torch.inference_mode():
            expected, served = net.model.eval()(x), net.served(x.contiguous(memory_format=torch.channels_last))
        torch.testing.assert_close(served, expected, rtol=1e-4, atol=1e-4, msg=net.name)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.served.modules())  # folded into the convs


def test_the_failure_log_writes_a_place_in_full_once_then_a_line_within_its_budget():
    """Each failure's traceback the first time it comes from its place, each text in it cut, whatever came before it;
    a repeat one line; at most so many repeats and log records a minute, the rest counted and the count written."""
    import io
    import logging

    import logs

    now, out = [0.0], io.StringIO()
    log = logs.FailureLog(per_minute=2, stream=out, clock=lambda: now[0])

    def fail(message: str, kind=ValueError) -> None:
        try:
            raise kind(message)
        except Exception as error:  # noqa: BLE001
            log.failed("GET /config", error)

    fail("x" * 30_000)
    first = out.getvalue()
    assert first.startswith("GET /config failed (written in full once") and "Traceback" in first
    assert "x" * 1001 not in first and re.search(r"… \(29,\d{3} more characters\)", first)
    for n in range(5):
        fail(f"again {n}")  # the same place: one line each, its location named; two a minute
    lines = out.getvalue()[len(first):].splitlines()
    assert len(lines) == 2 and re.fullmatch(r"GET /config failed: ValueError: again 0 \(\S+test_space_unit\.py:\d+\)",
                                            lines[0]), lines
    size = len(out.getvalue())
    fail("a bug of its own", kind=KeyError)  # another place: written in full although the repeats' budget is spent
    assert out.getvalue()[size:].startswith("GET /config failed (written in full once") and "KeyError" in out.getvalue()
    size = len(out.getvalue())
    records = [logging.LogRecord("mcp", logging.WARNING, __file__, 1, "Failed to validate: %s", ("y\n" * 5000,), None)
               for _ in range(3)]
    assert [log.record(record) for record in records] == [True, True, False]  # a budget of their own
    assert "\n" not in records[0].getMessage() and len(records[0].getMessage()) < 400
    assert records[0].getMessage().startswith("Failed to validate: y y y")
    now[0] = 61.0
    fail("later")
    assert out.getvalue()[size:].splitlines()[0] == "... and 3 more repeated failure(s) in the last 61 s"
