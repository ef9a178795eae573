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


def test_a_broken_folder_falls_back_to_the_next_source(models_dir, tmp_path, monkeypatch):
    (models_dir / "net" / "model.safetensors").write_bytes(b"\x00" * 10)  # truncated weights
    bundled = tmp_path / "bundled"
    convhub.create("net").save_pretrained(bundled / "net")
    monkeypatch.setattr(zoo_loader, "BUNDLED_DIR", bundled)
    [net] = zoo_loader.load_zoo(["net"], models_dir=models_dir)
    assert net.available and net.source.startswith("bundled (space/models) — local folder failed: ")
    assert "Hub offline" in net.source


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
    probs, table, seen, timing = inference.classify(nets, bird_jpg)
    assert set(probs) == set(SMALL_ZOO)
    for name, p in probs.items():
        assert set(p) == {"airplane", "bird"} and sum(p.values()) == pytest.approx(1, abs=1e-5)
        expected = nets[SMALL_ZOO.index(name)].model.predict(Image.open(bird_jpg))
        assert p == pytest.approx(expected, abs=1e-5)  # same preprocessing as the package's predict
    assert list(table["net"]) == SMALL_ZOO and (table["latency_ms"] > 0).all()
    assert seen.shape == (256, 256, 3) and seen.dtype == np.uint8
    assert timing["nets_ms"] == pytest.approx(table["latency_ms"].sum())
    assert 0 < timing["preprocess_ms"] < timing["total_ms"]


def test_classify_summary_gives_the_vote_and_the_total_time():
    table = inference.pd.DataFrame({"net": ["a", "b", "c"], "prediction": ["bird", "airplane", "bird"],
                                    "latency_ms": [1.0, 2.0, 3.5]})
    text = inference.classify_summary(table, {"nets_ms": 6.5, "preprocess_ms": 0.84, "total_ms": 7.4})
    assert text.startswith("**bird** by 2 of 3 nets, **airplane** by 1 of 3 nets.")
    assert "All 3 nets took 6.5 ms together (+ 0.8 ms" in text
    assert "No net is available" in inference.classify_summary(table.iloc[:0], {})


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
    probs = inference.classify(nets, path)[0]
    for net in nets:
        assert probs[net.name]["bird"] == pytest.approx(net.model.predict(Image.open(path))["bird"], abs=0.02)
    png = tmp_path / "photo.png"
    Image.fromarray(small).save(png)
    assert inference.open_upload(png).size == (40, 30)  # other formats decode in full


def test_torch_threads_share_the_cores_between_requests(monkeypatch):
    monkeypatch.delenv("CONVHUB_TORCH_THREADS", raising=False)
    monkeypatch.setattr(inference.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert inference.torch_threads(2) == 1 and inference.torch_threads(1) == 2 and inference.torch_threads(8) == 1
    monkeypatch.setenv("CONVHUB_TORCH_THREADS", "3")
    assert inference.torch_threads(2) == 3


@pytest.mark.parametrize("make", [
    lambda: Image.new("RGBA", (1, 1), (0, 0, 0, 0)),
    lambda: Image.new("L", (7, 300), 128),
    lambda: Image.new("P", (40, 20)),
    lambda: Image.new("I;16", (33, 33)),
])
def test_classify_accepts_odd_images(nets, make):
    probs, _, seen, _ = inference.classify(nets, make())
    assert len(probs) == len(SMALL_ZOO) and seen.shape == (256, 256, 3)


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
    probs, table, _, _ = inference.classify(nets, bird_jpg)
    assert "net_depth" not in probs and "net_depth" not in set(table["net"])


def test_filter_images(nets):
    first, deeper, note = inference.filter_images(nets[1].model)  # Net: conv1 16x3x3x3, conv2 8x16x3x3
    assert first.ndim == 3 and first.shape[2] == 3
    assert "conv1" in note and "16 kernels" in note
    [(grid, caption)] = deeper
    assert caption == "conv2: 8x16 kernels" and grid.ndim == 3
    tiles = (grid.shape[0] - 2) // (3 * 8 + 2), (grid.shape[1] - 2) // (3 * 8 + 2)
    assert tiles == (8, 16)  # one row per output channel, one 3x3 tile (x8) per input channel
    assert inference.filter_images(nets[0].model)[:2] == (None, [])  # fc has no convolutions
    assert "unavailable" in inference.filter_images(None)[2]


def test_filter_images_of_a_100_block_net_show_a_few_deeper_layers():
    _, deeper, note = inference.filter_images(convhub.create("net_res_deep100"))
    captions = [c for _, c in deeper]
    assert len(deeper) == inference.MAX_DEEPER_LAYERS and "6 of 100 shown" in note
    assert captions[0] == "resblocks.0.conv: 32x32 kernels (first 16x16)"
    assert captions[-1] == "resblocks.99.conv: 32x32 kernels (first 16x16)"


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
    assert "no measured accuracy: fc, net_res, net_res_deep100" in inference.accuracy_figure(table).axes[0].get_title()


def test_why_convolutions_uses_the_spaces_numbers(nets):
    table = inference.compare_table(nets)
    text = inference.why_convolutions(table)
    for word in ("Locality", "Weight sharing", "Translation invariance", "448 parameters", "3,146,752"):
        assert word in text
    assert "**3,737,474** parameters (no measured accuracy)" in text  # the fixture's fc has an untrained card
    assert "**18,090**, 207x fewer (0.910 validation accuracy)" in text
    assert "Here the" not in inference.why_convolutions(table[table["net"] != "fc"])


def test_sources_summary():
    nets = [zoo_loader.LoadedNet("fc", object(), "bundled (space/models) — Hub offline (HF_HUB_OFFLINE)"),
            zoo_loader.LoadedNet("net", object(), "local folder /m/net"),
            zoo_loader.LoadedNet("net_res", None, "unavailable — not in /m; Hub offline (HF_HUB_OFFLINE)")]
    assert zoo_loader.sources_summary(nets) == (
        "**2 of 3 nets loaded**: 1 from the weights bundled with this Space, 1 from local folder. "
        "Unavailable: `net_res` — Hub offline (HF_HUB_OFFLINE). Details on the Compare tab.")
    assert [zoo_loader.source_kind(n.source) for n in nets] == ["bundled", "local folder", "unavailable"]
    assert zoo_loader.source_kind("Hub someone/convhub-net@v1") == "Hub"


def test_app_wires_named_endpoints_and_missing_nets(nets):
    """build_demo without a server: the public API names, and a net that failed to load is listed, not served."""
    import app

    nets.append(zoo_loader.LoadedNet("net_depth", None, "unavailable — test"))
    demo = app.build_demo(nets)
    public = {fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public"}
    assert public == {"classify", "filters", "feature_maps", "compare"}
    labels = [b.label for b in demo.blocks.values() if type(b).__name__ == "Label"]
    assert labels == ["fc (3,737,474 params)", "net (18,090 params)", "net_res (16,130 params)"]
    markdown = " ".join(str(b.value) for b in demo.blocks.values() if type(b).__name__ == "Markdown")
    assert "**3 of 4 nets loaded**" in markdown and "`net_depth`: unavailable — test" in markdown


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
