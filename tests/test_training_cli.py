"""python -m training {train,zoo,evaluate}, run in-process through training.cli.main on synthetic image folders:
what gets saved, the model card's training record, determinism, the zoo report, evaluation and every user error
(exit code 2, a one-line message, no traceback)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import convhub
import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image
from safetensors.torch import load_file, save_file
from test_training_helpers import (  # noqa: F401 - fixtures: one_torch_thread (autouse), no_token
    assert_user_error,
    cifar10_batch,
    dump_py2,
    make_cifar10_root,
    make_image_folder,
    no_token,
    one_torch_thread,
    run_cli,
    synth_image,
)
from training import artifacts
from training.recipes import recipe_for

FAST = ["--batch-size", "16", "--quiet"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("cli") / "data", 50)


@pytest.fixture(scope="module")
def trained(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "net"
    code, stdout, stderr = run_cli("train", "--model", "net", "--data", folder, "--epochs", 3, "--out", out, *FAST)
    assert code == 0, stderr
    return out, stdout


# --- train ----------------------------------------------------------------------------------------------------------


def test_train_saves_weights_config_and_a_card_with_the_training_record(trained, folder):
    out, stdout = trained
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "README.md"}
    record = artifacts.read_record(out)
    assert record == ModelCard.load(out / "README.md").data.to_dict()["convhub"]
    assert record["model_name"] == "net" and record["params"] == convhub.create("net").num_params
    assert record["recipe"] == "default" and record["recipe_config"]["batch_size"] == 16 and record["seed"] == 0
    assert record["epochs"] == 3
    assert record["n_train"] + record["n_val"] == 100 and record["n_val"] == 10  # default 10 % validation
    assert record["val_accuracy"] >= 0.9 and record["train_accuracy"] >= 0.9  # learned; chance is 0.5
    assert sum(map(sum, record["confusion_matrix"])) == record["n_val"]
    assert f"val {record['val_accuracy']:.4f}" in stdout
    assert f"data: image folder {folder}" in stdout and "90 train, 10 val" in stdout  # the log names the path
    card = (out / "README.md").read_text()
    assert record["dataset"] == f"image folder {folder.name}" and str(folder.parent) not in card  # a card does not
    assert f"{record['val_accuracy']:.4f}" in card and "Recipe `default`" in card
    # where the folder's images came from, the run did not say: the card links no dataset (it said uoft-cs/cifar10)
    metadata = ModelCard.load(out / "README.md").data
    assert "dataset_id" not in record and metadata.datasets is None and "uoft-cs" not in card
    assert (metadata.eval_results[0].dataset_type, metadata.eval_results[0].dataset_name) == \
        ("imagefolder", f"image folder {folder.name}: airplane + bird")
    from training import engine, hardware

    precision = engine.resolve_precision(engine.pick_device("auto"), "auto")  # bf16 only where it is native
    assert record["precision"] == precision and f"on {record['device']}, {precision} |" in card
    assert hardware.cpu_model() in record["device"] or record["device"].startswith("cuda")  # the CPU by name


def test_trained_model_loads_and_classifies_new_images(trained, tmp_path):
    out, _ = trained
    model = convhub.load(out)
    assert isinstance(model, convhub.Net) and model.model_name == "net"
    saved = load_file(out / "model.safetensors")
    assert all(np.array_equal(saved[k].numpy(), v.numpy()) for k, v in model.state_dict().items())
    rng = np.random.default_rng(123)  # images the net never saw, through the inference preprocessing
    for label, name in enumerate(convhub.CIFAR2_CLASSES):
        path = tmp_path / f"{name}.png"
        Image.fromarray(synth_image(label, rng, size=64)).save(path)  # 64x64: resized like any user image
        probabilities = model.predict(path)
        assert max(probabilities, key=probabilities.get) == name


def test_book_recipe_from_the_cli(folder, tmp_path):
    code, stdout, _ = run_cli("train", "--model", "net", "--data", folder, "--recipe", "book", "--epochs", 1,
                              "--out", tmp_path / "book", "--quiet")
    assert code == 0
    record = artifacts.read_record(tmp_path / "book")
    config = record["recipe_config"]
    assert record["recipe"] == "book" and (config["lr"], config["batch_size"], config["augment"]) == (1e-2, 64, False)
    assert config["momentum"] == 0 and record["epochs"] == 1
    assert "SGD lr 0.01" in stdout and "no augmentation" in stdout


def test_same_seed_gives_identical_weights_and_another_seed_does_not(folder, tmp_path):
    def weights(seed, name):
        code, _, stderr = run_cli("train", "--model", "net", "--data", folder, "--epochs", 2, "--seed", seed,
                                  "--precision", "fp32", "--out", tmp_path / name, *FAST)
        assert code == 0, stderr
        return load_file(tmp_path / name / "model.safetensors")

    first, again, other = weights(5, "a"), weights(5, "b"), weights(6, "c")
    assert first.keys() == again.keys()
    assert all(np.array_equal(first[k].numpy(), again[k].numpy()) for k in first)
    assert not all(np.array_equal(first[k].numpy(), other[k].numpy()) for k in first)


def test_train_on_cifar10_batches_and_a_datasets_folder(tmp_path):
    from test_training_helpers import make_cifar10_root, make_parquet_dataset

    make_cifar10_root(tmp_path / "cifar", n_per_batch=20, n_test=20)
    make_parquet_dataset(tmp_path / "ds", n_train=40, n_test=20)
    for source, val in ((tmp_path / "cifar", "4 val"), (f"hf:{tmp_path / 'ds'}", "10 val")):
        code, stdout, stderr = run_cli("train", "--model", "net", "--data", source, "--epochs", 1,
                                       "--out", tmp_path / "out", "--overwrite", *FAST)
        assert code == 0, stderr
        assert f"{val} (the source's test split)" in stdout
        record = artifacts.read_record(tmp_path / "out")
        assert record["validation"] == "the source's test split"
        # CIFAR-10's batches are CIFAR-10, which the card links; a local folder's parquet files could be anything
        linked = ["uoft-cs/cifar10"] if val == "4 val" else None
        assert record.get("dataset_id") == (linked and linked[0])
        assert ModelCard.load(tmp_path / "out" / "README.md").data.datasets == linked


def test_train_on_a_hub_dataset_through_the_hubs_api_whatever_its_card_names(olah_server, tmp_path):
    """`--data hf:alice/cifar2` against a real Hub-compatible server (olah, on 127.0.0.1): the real CLI process
    downloads the dataset's parquet files and trains. A README whose data_files name a path on this machine changes
    nothing: the splits are the repo's own files, found by their names."""
    import os
    import subprocess
    import sys

    from conftest import git
    from test_training_helpers import make_parquet_dataset

    repo = olah_server.mirrors / "datasets" / "alice" / "cifar2"
    expected = make_parquet_dataset(repo, n_train=40, n_test=20)
    (repo / "README.md").write_text("---\nlicense: mit\n---\nCIFAR-2 for a test.\n")  # olah: 401 for a missing one
    git("init", "-q", "-b", "main", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "data", cwd=repo)
    env = {**os.environ, "HF_ENDPOINT": olah_server.url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0",
           "HF_DATASETS_CACHE": str(tmp_path / "datasets"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_CACHE"):
        env.pop(name, None)

    def train(out: str, data: str = "hf:alice/cifar2") -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "training", "train", "--model", "net", "--epochs", "1", *FAST,
                               "--data", data, "--out", str(tmp_path / out)],
                              cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True,
                              timeout=300)

    result = train("net")
    assert result.returncode == 0, result.stderr[-2000:]
    n_train, n_val = len(expected["train"][1]), len(expected["test"][1])  # the airplanes and birds of each split
    assert f"data: alice/cifar2 (datasets): {n_train} train, {n_val} val (the source's test split)" in result.stdout
    assert artifacts.read_record(tmp_path / "net")["dataset"] == "alice/cifar2 (datasets)"  # the id: no local path
    assert ModelCard.load(tmp_path / "net" / "README.md").data.datasets == ["alice/cifar2"]  # and the card links it

    elsewhere = tmp_path / "elsewhere"
    make_parquet_dataset(elsewhere, n_train=60, with_test=False)
    (repo / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n"
                                    f"    path: {elsewhere}/data/*.parquet\n---\nA dataset.\n")
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "card", cwd=repo)
    result = train("same")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"data: alice/cifar2 (datasets): {n_train} train, {n_val} val (the source's test split)" in result.stdout

    olah_server.stop()  # offline: the copy in the HF cache
    try:
        # the Hub unreachable, not offline: offline mode is suggested where the cache has a copy, and only there
        result = train("unreachable")
        assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].endswith(
            "not a local folder, and the Hub cannot be reached to download it as a dataset; pass a local folder, or "
            "set HF_HUB_OFFLINE=1 to use the copy in the HF cache")
        result = train("never", "hf:alice/never-downloaded")
        assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].endswith(
            "not a local folder, and the Hub cannot be reached to download it as a dataset; pass a local folder "
            "(the HF cache holds no copy of it either)")
        env.update(HF_HUB_OFFLINE="1")
        result = train("offline")
        assert result.returncode == 0, result.stderr[-2000:]
        assert f"data: alice/cifar2 (datasets): {n_train} train, {n_val} val" in result.stdout
        # one the cache has no copy of: huggingface_hub's words said to "pass 'local_files_only=False' as input"
        result = train("never", "hf:alice/never-downloaded")
        assert result.returncode == 2 and result.stderr.strip().splitlines()[-1] == (
            "error: dataset 'alice/never-downloaded' (split 'train'): not a local folder, and HF_HUB_OFFLINE is set "
            "while the HF cache holds no copy of it: pass a local folder, or unset HF_HUB_OFFLINE to download it")
    finally:
        olah_server.start()


def _dataset_repo(olah, repo_id: str, build) -> Path:
    from conftest import git

    repo = olah.mirrors / "datasets" / repo_id
    build(repo)
    (repo / "README.md").write_text("---\nlicense: mit\n---\nA dataset.\n")  # olah: 401 for a missing one
    git("init", "-q", "-b", "main", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "data", cwd=repo)
    return repo


def test_a_hub_dataset_larger_than_any_cifar_is_not_downloaded(olah_hub, hub_env, monkeypatch):
    """The repo's listing (sizes included) comes first: parquet files past the bounds are refused before any byte of
    them is downloaded (the bound lowered here to keep the test small)."""
    from test_training_helpers import make_parquet_dataset
    from training import data

    _dataset_repo(olah_hub, "alice/big", lambda repo: make_parquet_dataset(repo, n_train=200, n_test=100))
    monkeypatch.setattr(data, "MAX_HUB_BYTES", 50_000)
    with pytest.raises(data.DataError, match="more than 1,000 parquet files or 50,000 bytes of them .*nothing was "
                                             "downloaded"):
        data.load_hub_dataset("alice/big")
    assert not list(hub_env.rglob("*.parquet"))


def test_a_hub_datasets_image_paths_are_never_opened(olah_hub, hub_env, tmp_path):
    """A downloaded dataset's cells naming a path would read files of this machine (here a photo) into the model."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    photo = tmp_path / "private-photo.png"
    Image.fromarray(synth_image(1, np.random.default_rng(0))).save(photo)

    def build(repo: Path) -> None:
        (repo / "data").mkdir(parents=True)
        cells = [{"bytes": None, "path": str(photo)}, {"bytes": None, "path": "photo.png"}]
        image = pa.array(cells, pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
        pq.write_table(pa.table({"img": image, "label": [2, 2]}), repo / "data" / "train-00000-of-00001.parquet")

    _dataset_repo(olah_hub, "alice/paths", build)
    from training.data import load_hub_dataset

    train = load_hub_dataset("alice/paths")
    assert len(train) == 0 and train.skipped == 2


# --- zoo ------------------------------------------------------------------------------------------------------------


def test_zoo_trains_each_net_and_writes_the_report(folder, tmp_path):
    code, stdout, stderr = run_cli("zoo", "--models", "net,net_depth", "--data", folder, "--epochs", 1,
                                   "--out", tmp_path, *FAST)
    assert code == 0, stderr
    rows = json.loads((tmp_path / "results.json").read_text())
    assert [r["model"] for r in rows] == ["net", "net_depth"]
    for row in rows:
        assert row["params"] == convhub.create(row["model"]).num_params
        assert row["val_accuracy"] == round(artifacts.read_record(tmp_path / row["model"])["val_accuracy"], 4)
        assert row["epochs"] == 1 and row["recipe"] == "default"
        assert (tmp_path / row["model"] / "model.safetensors").is_file()
    table = (tmp_path / "results.md").read_text()
    assert "| net |" in table and "| net_depth |" in table and f"{rows[1]['params']:,}" in table
    assert table in stdout
    with Image.open(tmp_path / "accuracy_vs_params.png") as plot:
        assert plot.format == "PNG" and plot.width > 300

    # `report` rebuilds the same table from the saved cards alone
    for name in ("results.json", "results.md", "accuracy_vs_params.png"):
        (tmp_path / name).unlink()
    code, stdout, stderr = run_cli("report", "--out", tmp_path)
    assert code == 0, stderr
    assert json.loads((tmp_path / "results.json").read_text()) == rows
    assert (tmp_path / "results.md").read_text() == table and (tmp_path / "accuracy_vs_params.png").is_file()

    # one net trained again (or a net added): the table keeps the others, as `report` would list them
    (tmp_path / "translation.json").write_text("{}")  # as `translation` left it: about the nets before
    code, stdout, stderr = run_cli("zoo", "--models", "fc,net", "--data", folder, "--epochs", 1, "--seed", 1,
                                   "--out", tmp_path, "--overwrite", *FAST)
    assert code == 0, stderr
    again = json.loads((tmp_path / "results.json").read_text())
    assert [r["model"] for r in again] == ["fc", "net", "net_depth"]  # the chapter's order
    assert again[2] == rows[1]  # net_depth as it was
    assert again[1]["val_accuracy"] == round(artifacts.read_record(tmp_path / "net")["val_accuracy"], 4)
    assert "The table keeps 1 net(s) trained before in" in stdout and "net_depth" in stdout
    assert f"translation.json holds the curves of the nets before this run: `python -m training translation " \
           f"--models {tmp_path} --data {folder} --seed 1 --val-fraction 0.1` measures them again" in stdout
    table = (tmp_path / "results.md").read_text()
    code, stdout, stderr = run_cli("report", "--out", tmp_path)
    assert code == 0, stderr
    assert json.loads((tmp_path / "results.json").read_text()) == again
    assert (tmp_path / "results.md").read_text() == table


def test_zoo_side_by_side_trains_exactly_what_one_by_one_does(folder, tmp_path, monkeypatch):
    (tmp_path / "-data").symlink_to(folder)  # a relative path that starts like an option
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str((tmp_path / "tmp").resolve()))
    (tmp_path / "tmp").mkdir()
    common = ["--models", "net,net_depth,fc", "--data=-data", "--epochs", 1, "--threads", 1, "--seed", 3,
              "--val-fraction", 0.2, "--dataset-id", "alice/cifar2", *FAST]
    code, stdout, stderr = run_cli("zoo", *common, "--out", tmp_path / "side", "--jobs", 2)
    assert code == 0, stderr
    # the most work first (fc: most multiply-adds per image at equal epochs), each net in its own process
    assert "training 3 nets 2 at a time, 1 torch thread(s) each, longest first: fc, net_depth, net" in stdout
    for name in ("net", "net_depth", "fc"):
        assert f"[{name}] {name}: val " in stdout  # every line of a net, prefixed with its name
        # on the data the zoo decoded, not decoded again; the copy is gone with the zoo
        assert f"[{name}] data: image folder -data: 80 train, 20 val (seeded class-balanced 20% of it (seed 3)), " \
               "as the zoo decoded it" in stdout
    # the copy had no name there (torch._dynamo's first import makes its own cache folder, torchinductor_<user>)
    assert [p.name for p in (tmp_path / "tmp").iterdir() if not p.name.startswith("torchinductor_")] == []
    code, stdout, stderr = run_cli("zoo", *common, "--out", tmp_path / "one", "--jobs", 1)
    assert code == 0, stderr
    assert "at a time" not in stdout and "[net]" not in stdout
    side, one = (json.loads((tmp_path / run / "results.json").read_text()) for run in ("side", "one"))
    assert [r["model"] for r in side] == ["fc", "net", "net_depth"]  # the chapter's order, not the training order
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in side] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in one]
    for name in ("net", "net_depth", "fc"):  # same seed, same data, same threads: the same weights
        for run in ("side", "one"):  # --dataset-id reached every net, in its own process or not
            assert ModelCard.load(tmp_path / run / name / "README.md").data.datasets == ["alice/cifar2"]
        side_weights, one_weights = (load_file(tmp_path / run / name / "model.safetensors") for run in ("side", "one"))
        assert all(torch.equal(side_weights[k], one_weights[k]) for k in one_weights)


def test_a_zoo_that_cannot_write_its_decoded_copy_says_so_and_each_net_decodes_the_data(folder, tmp_path,
                                                                                         monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no such folder"))  # TMPDIR names a missing folder
    code, stdout, stderr = run_cli("zoo", "--models", "net,fc", "--data", folder, "--epochs", 1, "--jobs", 2,
                                   "--out", tmp_path / "z", *FAST)
    assert code == 0, stderr
    assert "each net decodes the data itself: its decoded copy could not be written" in stderr
    assert "No such file or directory" in stderr and "Traceback" not in stderr
    for name in ("net", "fc"):
        assert f"[{name}] data: image folder {folder}: 90 train, 10 val (seeded class-balanced 10% of it (seed 0))\n" \
            in stdout
        assert artifacts.read_record(tmp_path / "z" / name)["n_train"] == 90


def test_train_on_the_zoos_decoded_copy_trains_what_train_on_the_folder_does(folder, tmp_path):
    from training.data import load_cifar2, save_decoded

    decoded = tmp_path / "decoded.safetensors"
    with open(decoded, "wb") as file:
        save_decoded(load_cifar2(folder, val_fraction=0.2, seed=5), file)
    runs = {"folder": ["--data", folder], "copy": ["--data", tmp_path / "nothing here", "--zoo-data", decoded]}
    for run, data in runs.items():
        code, stdout, stderr = run_cli("train", "--model", "net", *data, "--val-fraction", 0.2, "--seed", 5,
                                       "--epochs", 1, "--out", tmp_path / run, *FAST)
        assert code == 0, stderr
        assert stdout.startswith(f"data: image folder {folder}: 80 train, 20 val")
        assert ("as the zoo decoded it" in stdout) == (run == "copy")
    weights = [load_file(tmp_path / run / "model.safetensors") for run in runs]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    timings = ("seconds", "history", "images_per_second")
    records = [{k: v for k, v in artifacts.read_record(tmp_path / run).items() if k not in timings} for run in runs]
    assert records[0] == records[1] and records[0]["n_train"] == 80


def test_train_on_a_decoded_copy_that_is_not_one_is_a_user_error(folder, tmp_path):
    (tmp_path / "decoded.safetensors").write_bytes(b"\x00" * 100)
    code, stdout, stderr = run_cli("train", "--model", "net", "--data", folder, "--zoo-data",
                                   tmp_path / "decoded.safetensors", "--out", tmp_path / "net", *FAST)
    assert_user_error(code, stderr, "decoded.safetensors is not decoded data as the zoo writes it")
    assert not (tmp_path / "net").exists() or not any((tmp_path / "net").iterdir())


def test_a_net_failing_side_by_side_stops_the_zoo_and_names_it(folder, tmp_path):
    code, stdout, stderr = run_cli("zoo", "--models", "net,net_depth,fc", "--data", folder, "--epochs", 1, "--lr",
                                   "1e30", "--jobs", 2, "--out", tmp_path / "z", *FAST)
    assert_user_error(code, stderr, "net_depth (exit 2), fc (exit 2) failed", "nets still waiting were not started")
    # each net's lines go where it wrote them, prefixed: errors to stderr (as with --jobs 1), the rest to stdout
    assert "[fc] error: training diverged" in stderr and "[net_depth] error: training diverged" in stderr
    assert "error" not in stdout and "[fc] " in stdout
    assert "[net]" not in stdout and not (tmp_path / "z" / "net").exists()  # never started
    assert not (tmp_path / "z" / "results.json").exists()


def test_jobs_auto_is_two_nets_at_a_time_on_a_cpu(monkeypatch):
    from training import parallel

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(parallel, "cpu_cores", lambda: 2)
    assert parallel.resolve_jobs("auto", cpu, 9) == 2 and parallel.resolve_jobs("auto", cpu, 1) == 1
    assert parallel.resolve_jobs("auto", gpu, 9) == 1 and parallel.resolve_jobs("3", gpu, 9) == 3
    assert parallel.resolve_jobs("16", cpu, 9) == 9
    monkeypatch.setattr(parallel, "cpu_cores", lambda: 1)
    assert parallel.resolve_jobs("auto", cpu, 9) == 1


def test_the_zoo_starts_the_nets_that_take_longest_first():
    from training import parallel

    # `net`, counted by hand: conv1 16x32x32 outputs of 3x3x3, conv2 8x16x16 of 3x3x16, fc 512 -> 32 -> 2
    assert parallel.training_work("net")["multiply_adds"] == 16 * 1024 * 27 + 8 * 256 * 144 + 512 * 32 + 32 * 2
    order = parallel.longest_first({name: recipe_for(name) for name in convhub.ZOO})
    assert order[:2] == ["net_res_deep100", "net_res_deep"] and order[-1] == "net"
    # net_batchnorm (93 s in a zoo run) trains longer than net_width, net_depth and net_res (61-67 s): its batch norm
    # writes as many values as its convs. Counted by multiply-adds alone it came after them.
    assert all(order.index("net_batchnorm") < order.index(other) for other in ("net_width", "net_depth", "net_res"))


@pytest.mark.parametrize("flag,value,message", [
    ("--jobs", "0", "a whole number of at least 1"), ("--jobs", "two", "a whole number of at least 1"),
    ("--threads", "0", "a whole number from 1 to 256"), ("--threads", "-1", "a whole number from 1 to 256"),
    ("--threads", "100000", "a whole number from 1 to 256"),  # OpenMP crashed on it: a segfault, no message
])
def test_jobs_and_threads_must_be_whole_numbers(folder, tmp_path, flag, value, message):
    code, _, stderr = run_cli("zoo", "--models", "net", "--data", folder, "--out", tmp_path / "z", flag, value)
    assert code == 2 and f"{value!r} is not {message}" in stderr
    assert not (tmp_path / "z").exists()


@pytest.mark.parametrize("command", ["train", "zoo"])
@pytest.mark.parametrize("flag, value, message", [
    ("--epochs", "0", "is not a whole number from 1 to 100,000"),  # saved the untrained net, exit 0
    ("--epochs", "-3", "is not a whole number from 1 to 100,000"),
    ("--batch-size", "0", "is not a whole number of at least 1"),  # ZeroDivisionError
    ("--lr", "0", "is not a number above 0"),
    ("--lr", "-1", "is not a number above 0"),  # torch's ValueError, with a traceback
    ("--lr", "nan", "is not a number above 0"),  # trained until it diverged
    ("--lr", "inf", "is not a number above 0"),
    ("--seed", "99999999999999999999999", "is not a whole number from -2**63 to 2**63-1"),  # torch's overflow
    ("--epochs", "99999999999999999999999", "is not a whole number from 1 to 100,000"),  # range()'s, after loading
])
def test_a_recipe_override_that_cannot_train_is_refused_before_anything_runs(folder, tmp_path, command, flag,
                                                                            value, message):
    model = ["--model", "net"] if command == "train" else ["--models", "net"]
    code, stdout, stderr = run_cli(command, *model, "--data", folder, "--out", tmp_path / "out", flag, value)
    assert code == 2 and f"argument {flag}: {value!r} {message}" in stderr and not stdout
    assert not (tmp_path / "out").exists()


def test_a_batch_larger_than_the_training_set_is_recorded_as_the_batch_it_was(folder, tmp_path):
    """Each epoch is one step on every training image; the card said batch 1000 (the book recipe's 64 on a small
    folder likewise)."""
    out = tmp_path / "net"
    code, stdout, stderr = run_cli("train", "--model", "net", "--data", folder, "--epochs", 2, "--out", out,
                                   "--batch-size", 1000, "--quiet")
    assert code == 0, stderr
    assert "net: batch 1000 is more than the 90 training images; batch 90" in stdout
    record = artifacts.read_record(out)
    assert record["recipe_config"]["batch_size"] == 90 and "batch 90," in record["recipe_description"]


def test_report_without_trained_models_is_a_user_error(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_user_error(*run_cli("report", "--out", tmp_path / "empty")[::2], "no trained models")
    assert_user_error(*run_cli("report", "--out", tmp_path / "missing")[::2], "no such folder")


def test_zoo_rejects_unknown_models_before_any_work(folder, tmp_path):
    code, stdout, stderr = run_cli("zoo", "--models", "net,resnet50", "--data", folder, "--out", tmp_path / "z")
    assert_user_error(code, stderr, "unknown model 'resnet50'", "net_res_deep100")
    assert "data:" not in stdout and not (tmp_path / "z").exists()


@pytest.mark.parametrize("models, message", [(",", "--models names no net"), (" , ", "--models names no net"),
                                             ("net,net_width,net", "--models names net more than once")])
def test_zoo_refuses_no_nets_or_a_net_twice_and_keeps_the_report_in_place(folder, tmp_path, models, message):
    """An empty list replaced the zoo's report with an empty one, then failed drawing it; a net named twice trained
    twice, and its second save left a folder that blocked the zoo's folder from then on."""
    zoo = tmp_path / "z"
    assert run_cli("zoo", "--models", "net", "--data", folder, "--out", zoo, "--epochs", 1, "--quiet")[0] == 0
    before = {p.name: p.read_bytes() for p in zoo.iterdir() if p.is_file()}
    code, stdout, stderr = run_cli("zoo", "--models", models, "--data", folder, "--out", zoo, "--overwrite")
    assert_user_error(code, stderr, message)
    assert "data:" not in stdout and {p.name: p.read_bytes() for p in zoo.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in zoo.iterdir() if p.is_dir()) == ["net"]


def test_fp32_on_a_cpu_trains_the_deep_nets_on_their_shorter_schedule(folder, tmp_path):
    code, stdout, stderr = run_cli("train", "--model", "net_res_deep100", "--data", folder, "--out", tmp_path / "m",
                                   "--device", "cpu", "--precision", "fp32", "--quiet")
    assert code == 0, stderr
    assert "4 epochs and a whitened first conv instead of 8: this CPU trains in fp32" in stdout
    card = ModelCard.load(tmp_path / "m" / "README.md").data.to_dict()["convhub"]
    assert card["recipe_config"]["epochs"] == 4 and card["recipe_config"]["whiten_first_conv"] == "pairs"
    assert card["precision"] == "fp32"


def test_precision_is_said_and_recorded_and_emulated_bf16_is_called_slower(folder, tmp_path):
    """--precision bf16 on a CPU without native bf16 trained in emulated bf16, slower than fp32, and nothing said so:
    the start line did not name the precision, and the card's recipe said "auto" beside a run in bf16."""
    from training import engine

    native = engine.bf16_supported(torch.device("cpu"))
    code, stdout, stderr = run_cli("train", "--model", "net", "--data", folder, "--out", tmp_path / "bf16",
                                   "--device", "cpu", "--precision", "bf16", "--epochs", 1, *FAST)
    assert code == 0, stderr
    assert "bf16 precision, on cpu" in stdout and "batch 16, 1 epoch, " in stdout  # not "1 epochs"
    assert ("net: this cpu has no native bf16 (AVX512-BF16 or AMX on a CPU): bf16 is emulated, slower than fp32"
            in stdout) is not native
    card = ModelCard.load(tmp_path / "bf16" / "README.md").data.to_dict()["convhub"]
    assert card["precision"] == "bf16" and card["recipe_config"]["precision"] == "bf16"

    code, stdout, stderr = run_cli("train", "--model", "net", "--data", folder, "--out", tmp_path / "auto",
                                   "--device", "cpu", "--epochs", 1, *FAST)
    assert code == 0, stderr
    assert f", on cpu in {'bf16' if native else 'fp32'}\n" in stdout and "emulated" not in stdout
    card = ModelCard.load(tmp_path / "auto" / "README.md").data.to_dict()["convhub"]
    assert card["precision"] == ("bf16" if native else "fp32") and card["recipe_config"]["precision"] == "auto"


def test_with_epochs_given_fp32_still_says_why_the_first_conv_is_whitened(folder, tmp_path):
    """--epochs sets the epochs, but net_res_deep100's fp32 schedule still whitens its first conv: train said so
    only when the epochs differed, so with --epochs the whitening went unexplained."""
    code, stdout, stderr = run_cli("train", "--model", "net_res_deep100", "--data", folder, "--out", tmp_path / "m",
                                   "--device", "cpu", "--precision", "fp32", "--epochs", 1, "--quiet")
    assert code == 0, stderr
    assert "net_res_deep100: a whitened first conv, as its fp32 schedule has: this CPU trains in fp32" in stdout
    assert "instead of" not in stdout
    card = ModelCard.load(tmp_path / "m" / "README.md").data.to_dict()["convhub"]
    assert card["recipe_config"]["epochs"] == 1 and card["recipe_config"]["whiten_first_conv"] == "pairs"


@pytest.mark.parametrize("command", ["train", "zoo"])
def test_a_device_that_is_not_there_is_refused_before_any_work(command, folder, tmp_path):
    device = "cuda:64" if torch.cuda.is_available() else "cuda"
    extra = ["--model", "net"] if command == "train" else ["--models", "net"]
    code, stdout, stderr = run_cli(command, *extra, "--data", folder, "--out", tmp_path / "m", "--device", device)
    assert_user_error(code, stderr, f"device '{device}'")
    assert "data:" not in stdout and not (tmp_path / "m").exists()


# --- evaluate -------------------------------------------------------------------------------------------------------


def test_evaluate_prints_accuracy_and_confusion_matrix(trained, folder):
    out, _ = trained
    code, stdout, _ = run_cli("evaluate", "--model", out, "--data", folder)
    assert code == 0
    assert "100 images" in stdout and "accuracy: " in stdout
    assert "confusion matrix (rows: true, columns: predicted)" in stdout
    matrix_rows = [line.split() for line in stdout.splitlines() if line.split()[:1] in (["airplane"], ["bird"])
                   and len(line.split()) == 3]
    assert [row[0] for row in matrix_rows] == ["airplane", "bird"]
    assert sum(int(v) for row in matrix_rows for v in row[1:]) == 100


def test_evaluate_json_is_consistent(trained, tmp_path):
    out, _ = trained
    data = make_image_folder(tmp_path / "data", 30, seed=7)  # unseen images, uneven: 30 airplanes, 12 birds
    for path in sorted((data / "bird").iterdir())[12:]:
        path.unlink()
    (data / "bird" / "broken.png").write_bytes(b"")

    code, stdout, _ = run_cli("evaluate", "--model", out, "--data", data, "--json")
    assert code == 0
    result = json.loads(stdout)
    matrix = np.array(result["confusion_matrix"])
    assert matrix.sum() == result["n_images"] == 42 and matrix.sum(axis=1).tolist() == [30, 12]
    # exactly the counts' ratios: float32's were 0.9700000286102295 for 0.97
    assert result["accuracy"] == int(np.trace(matrix)) / 42
    assert result["per_class_accuracy"] == {"airplane": int(matrix[0, 0]) / 30, "bird": int(matrix[1, 1]) / 12}
    assert result["skipped"] == 1
    assert result["accuracy"] >= 0.9


def test_evaluate_matches_the_models_classes_by_name_not_by_position(trained, folder, tmp_path):
    """A config may list its names in either order: the data's airplanes were scored against output 0 whatever the
    model called it, and printed under the model's first name."""
    out, _ = trained
    swapped = tmp_path / "swapped"
    shutil.copytree(out, swapped)
    model = convhub.load(out)
    config = json.loads((swapped / "config.json").read_text())
    config["class_names"] = ["bird", "airplane"]
    (swapped / "config.json").write_text(json.dumps(config))
    state = {k: v.flip(0) if k.startswith("fc2.") else v for k, v in model.state_dict().items()}  # outputs swapped
    save_file(state, swapped / "model.safetensors")

    plain = json.loads(run_cli("evaluate", "--model", out, "--data", folder, "--json")[1])
    code, stdout, stderr = run_cli("evaluate", "--model", swapped, "--data", folder, "--json")
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["accuracy"] == plain["accuracy"] >= 0.9
    assert result["per_class_accuracy"] == plain["per_class_accuracy"]
    assert result["confusion_matrix"] == [row[::-1] for row in plain["confusion_matrix"][::-1]]  # bird first


def test_evaluate_refuses_a_model_of_other_classes_and_data_without_any_of_ours(trained, folder, tmp_path):
    out, _ = trained
    other = tmp_path / "cats"
    shutil.copytree(out, other)
    config = json.loads((other / "config.json").read_text())
    config["class_names"] = ["cat", "dog"]
    (other / "config.json").write_text(json.dumps(config))
    assert_user_error(*run_cli("evaluate", "--model", other, "--data", folder)[::2], "the model's classes are 'cat'")
    root = tmp_path / "c10"
    make_cifar10_root(root)
    batches = root / "cifar-10-batches-py"
    test, _ = cifar10_batch([1, 3, 5, 7], np.random.default_rng(0), "test_batch")  # no airplane (0), no bird (2)
    dump_py2(test, batches / "test_batch")
    code, stdout, stderr = run_cli("evaluate", "--model", out, "--data", root)
    assert_user_error(code, stderr, "holds no airplane or bird image")


def test_evaluate_unknown_model_folder_is_a_user_error(folder, tmp_path):
    code, _, stderr = run_cli("evaluate", "--model", tmp_path / "no-model", "--data", folder)
    assert_user_error(code, stderr, "no-model")


# --- user errors ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["train --out", "train --data", "evaluate --model", "translation --models",
                                     "publish --from"])
def test_a_path_the_system_refuses_is_one_line_naming_it(folder, tmp_path, command):
    """A name longer than the file system allows: Path.exists and is_dir raise instead of answering, and each of
    these commands ended in an OSError traceback."""
    too_long = tmp_path / ("a" * 300)
    args = {"train": ["--model", "net", "--data", folder, "--out", tmp_path / "out", *FAST],
            "evaluate": ["--model", tmp_path / "model", "--data", folder],
            "translation": ["--models", tmp_path / "models", "--data", folder],
            "publish": ["--namespace", "me", "--from", tmp_path / "models", "--dry-run", tmp_path / "dry"]}
    name, flag = command.split()
    argv = args[name]
    argv[argv.index(flag) + 1] = too_long
    code, _, stderr = run_cli(name, *argv)
    assert_user_error(code, stderr, "File name too long", "aaaaaaaaaa")
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == []  # nothing written


def test_a_folder_or_file_that_is_not_readable_is_one_line_naming_it(tmp_path):
    """As an operator who is not root meets it (root reads anything; as root the commands run without that right):
    a net's folder not readable was a PermissionError traceback from is_file, its weights not readable "weights ... do
    not fit", and publish --only fc failed on the folder of a net it was not asked to publish."""
    import subprocess
    import sys

    from conftest import without_root_read_override

    as_user = without_root_read_override()
    repo = Path(__file__).resolve().parents[1]
    root, models = tmp_path, tmp_path / "models"
    data = make_image_folder(root / "data", 4)
    for name in ("fc", "net"):
        shutil.copytree(repo / "space" / "models" / name, models / name)
    shutil.copytree(models / "net", root / "weights")
    try:
        for path in (models / "net", root / "weights" / "model.safetensors"):
            path.chmod(0)
        env = {**os.environ, "HOME": str(root), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(repo)}

        def run(*argv):
            result = subprocess.run([*as_user, sys.executable, "-m", "training", *map(str, argv)], cwd=root, env=env,
                                    capture_output=True, text=True, timeout=120)
            return result.returncode, result.stderr

        code, stderr = run("evaluate", "--model", models / "net", "--data", data)
        assert_user_error(code, stderr, f"cannot read '{models / 'net'}': Permission denied")
        code, stderr = run("evaluate", "--model", root / "weights", "--data", data)
        assert_user_error(code, stderr, f"cannot read '{root / 'weights' / 'model.safetensors'}': Permission denied")
        code, stderr = run("publish", "--namespace", "me", "--from", models, "--dry-run", root / "all")
        assert_user_error(code, stderr, f"cannot read '{models / 'net'}': Permission denied")
        code, stderr = run("publish", "--namespace", "me", "--from", models, "--only", "fc", "--dry-run", root / "fc")
        assert code == 0, stderr
        assert (root / "fc" / "models" / "me" / "convhub-fc" / "model.safetensors").is_file()
    finally:
        (models / "net").chmod(0o755)  # for pytest to remove it


def test_data_that_is_a_file_or_a_revision_of_a_local_folder_is_refused_naming_it(folder, tmp_path):
    image = next((folder / "bird").iterdir())
    code, _, stderr = run_cli("train", "--model", "net", "--data", image, "--out", tmp_path / "o")
    assert_user_error(code, stderr, f"{image} is a file, not a folder of class folders")  # was "no such folder"
    # --data-revision was ignored for a local folder: the folder was read as it is
    for data in (folder, f"hf:{folder}"):
        code, _, stderr = run_cli("train", "--model", "net", "--data", data, "--data-revision", "v2", "--out",
                                  tmp_path / "o")
        assert_user_error(code, stderr, "is a local folder: --data-revision 'v2' applies to Hub datasets only")
    assert not (tmp_path / "o").exists()


def test_missing_data_folder(tmp_path):
    code, _, stderr = run_cli("train", "--model", "net", "--data", tmp_path / "missing", "--out", tmp_path / "o")
    assert_user_error(code, stderr, "no such data folder", "missing")
    assert not (tmp_path / "o").exists()


def test_wrong_class_folders(tmp_path):
    for name in ("cat", "dog"):
        (tmp_path / "d" / name).mkdir(parents=True)
        Image.new("RGB", (32, 32)).save(tmp_path / "d" / name / "x.png")
    code, _, stderr = run_cli("train", "--model", "net", "--data", tmp_path / "d", "--out", tmp_path / "o")
    assert_user_error(code, stderr, "airplane/", "bird/", "found: 'cat', 'dog'")


def test_folder_names_reach_the_log_quoted_and_a_few_at_a_time(tmp_path, caplog):
    """A folder named with a newline forged an 'ERROR:' line, and 3,000 folders made one warning of 29 KB."""
    data = make_image_folder(tmp_path / "d", 20)
    (data / "evil\nERROR: the model was pushed to the Hub").mkdir()
    for i in range(300):
        (data / f"class_{i}").mkdir()
    with caplog.at_level("WARNING"):
        code, stdout, stderr = run_cli("train", "--model", "net", "--data", data, "--epochs", 1,
                                       "--out", tmp_path / "o", *FAST)
    assert code == 0, stderr
    [warning] = [r.getMessage() for r in caplog.records if "ignoring subfolders" in r.getMessage()]
    assert "\n" not in warning and len(warning) < 1000 and "and 291 more" in warning


def test_a_data_folder_named_with_a_line_break_and_markup_is_one_line_of_text_in_the_card(tmp_path):
    """The folder's own name goes into the record and the card: a line break in it made a heading of its own."""
    data = make_image_folder(tmp_path / "cifar2\n# Pwned <img src=x>", 20)
    code, stdout, stderr = run_cli("train", "--model", "net", "--data", data, "--epochs", 1, "--out", tmp_path / "o",
                                   *FAST)
    assert code == 0, stderr
    assert artifacts.read_record(tmp_path / "o")["dataset"] == "image folder cifar2 # Pwned <img src=x>"
    card = (tmp_path / "o" / "README.md").read_text()
    assert "\n# Pwned" not in card and "- Data: image folder cifar2 # Pwned \\<img src=x\\>" in card


def test_images_linked_from_outside_the_folder_are_said(tmp_path, caplog):
    """Links a user made are read, as they are meant to be; a downloaded folder's could name any photo on this
    machine, into a model that may be published: the log says how many and where they point."""
    data = make_image_folder(tmp_path / "d", 20)
    (tmp_path / "home").mkdir()
    Image.new("RGB", (32, 32), (200, 200, 200)).save(tmp_path / "home" / "private.png")
    (data / "bird" / "linked.png").symlink_to(tmp_path / "home" / "private.png")
    (data / "bird" / "inside.png").symlink_to(data / "bird" / sorted(os.listdir(data / "bird"))[0])
    with caplog.at_level("WARNING"):
        assert run_cli("train", "--model", "net", "--data", data, "--epochs", 1, "--out", tmp_path / "o",
                       *FAST)[0] == 0
    assert "1 image(s) are links to files outside" in caplog.text and "private.png" in caplog.text


def test_a_parquet_file_beside_the_class_folders_leaves_an_image_folder_one(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = make_image_folder(tmp_path / "d", 20)
    (data / "notes").mkdir()
    pq.write_table(pa.table({"a": [1]}), data / "notes" / "stats.parquet")
    code, stdout, stderr = run_cli("train", "--model", "net", "--data", data, "--epochs", 1, "--out", tmp_path / "o",
                                   *FAST)
    assert code == 0, stderr
    assert artifacts.read_record(tmp_path / "o")["n_train"] + artifacts.read_record(tmp_path / "o")["n_val"] == 40


def test_a_dataset_without_airplanes_or_birds_says_so(tmp_path):
    from datasets import Dataset

    (tmp_path / "ds" / "data").mkdir(parents=True)
    Dataset.from_dict({"img": [b"x"] * 4, "label": [1, 3, 5, 7]}).to_parquet(
        str(tmp_path / "ds" / "data" / "train-00000-of-00001.parquet"))
    code, _, stderr = run_cli("train", "--model", "net", "--data", tmp_path / "ds", "--out", tmp_path / "o")
    assert_user_error(code, stderr, "holds no airplane or bird image (CIFAR-10's labels 0 and 2")


def test_unreadable_images_are_skipped_and_reported(tmp_path, caplog):
    data = make_image_folder(tmp_path / "d", 20)
    (data / "airplane" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00garbage" * 50)
    (data / "bird" / "empty.png").write_bytes(b"")
    with caplog.at_level("WARNING"):
        code, stdout, stderr = run_cli("train", "--model", "net", "--data", data, "--epochs", 1,
                                       "--out", tmp_path / "o", *FAST)
    assert code == 0, stderr
    assert "2 unreadable file(s) skipped" in stdout
    assert "skipped 2 unreadable image(s)" in caplog.text
    assert artifacts.read_record(tmp_path / "o")["n_train"] + artifacts.read_record(tmp_path / "o")["n_val"] == 40


def test_cifar10_root_with_a_corrupt_batch(tmp_path):
    from test_training_helpers import make_cifar10_root

    make_cifar10_root(tmp_path / "c", n_per_batch=10, n_test=10)
    (tmp_path / "c" / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"not a pickle")
    code, _, stderr = run_cli("train", "--model", "net", "--data", tmp_path / "c", "--out", tmp_path / "o")
    assert_user_error(code, stderr, "CIFAR-10")


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_a_cifar10_batch_that_would_run_code_is_refused_and_nothing_runs(tmp_path, command):
    """A CIFAR-10 root from a stranger: its batches are pickles, and one that names os.system must not call it."""
    import os
    import pickle

    from test_training_helpers import RunsOnLoad, make_cifar10_root

    make_cifar10_root(tmp_path / "c", n_per_batch=10, n_test=10)
    marker = tmp_path / "ran"
    batch = "data_batch_4" if command == "train" else "test_batch"
    (tmp_path / "c" / "cifar-10-batches-py" / batch).write_bytes(
        pickle.dumps(RunsOnLoad(os.system, f"touch {marker}")))
    if command == "train":
        code, _, stderr = run_cli("train", "--model", "net", "--data", tmp_path / "c", "--out", tmp_path / "o")
        assert not (tmp_path / "o").exists()
    else:
        net = Path(__file__).resolve().parents[1] / "space" / "models" / "net"
        code, _, stderr = run_cli("evaluate", "--model", net, "--data", tmp_path / "c")
    assert_user_error(code, stderr, f"{batch} is not a CIFAR-10 python batch", "system", "a pickle can run code")
    assert not marker.exists()


def test_push_without_token_fails_before_training(no_token, folder, tmp_path):
    code, stdout, stderr = run_cli("train", "--model", "net", "--data", folder, "--out", tmp_path / "o",
                                   "--push", "user/convhub-net")
    assert_user_error(code, stderr, "no Hugging Face token", "HF_TOKEN")
    assert "data:" not in stdout  # not even the data was loaded
    assert not (tmp_path / "o").exists()

    code, stdout, stderr = run_cli("zoo", "--models", "net", "--data", folder, "--out", tmp_path / "z",
                                   "--push", "user")
    assert_user_error(code, stderr, "no Hugging Face token")
    assert "data:" not in stdout and not (tmp_path / "z").exists()


def test_push_while_offline_fails_before_training(monkeypatch, folder, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, stdout, stderr = run_cli("train", "--model", "net", "--data", folder, "--out", tmp_path / "o",
                                   "--push", "user/convhub-net", "--token", "hf_x")
    assert_user_error(code, stderr, "HF_HUB_OFFLINE", "python -m training push")
    assert "data:" not in stdout and not (tmp_path / "o").exists()


@pytest.mark.parametrize("value", ["http://[::1", "huggingface.co"])
def test_a_malformed_hf_endpoint_is_one_line_before_any_work(folder, tmp_path, value):
    """The real `python -m training`: huggingface_hub parses HF_ENDPOINT when it is imported, which was a traceback
    for an unclosed '['; a URL without its scheme would have been read as "the Hub cannot be reached"."""
    import os
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "training", "train", "--model", "net", "--data", str(folder),
                             "--out", str(tmp_path / "m"), "--push", "alice/convhub-net"],
                            cwd=Path(__file__).resolve().parents[1], env={**os.environ, "HF_ENDPOINT": value},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: HF_ENDPOINT must be the Hub's http(s) URL, such as https://huggingface.co or http://127.0.0.1:8090 "
        f"(unset it for huggingface.co), not {value!r}"]
    assert result.stdout == "" and not (tmp_path / "m").exists()


def test_unknown_model_name_is_an_argparse_error(folder, tmp_path):
    code, _, stderr = run_cli("train", "--model", "net_rez", "--data", folder, "--out", tmp_path / "o")
    assert code == 2 and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].endswith("argument --model: unknown model 'net_rez' (did you mean "
                                                    "net_res?); the zoo has: fc, net, net_width, net_dropout, "
                                                    "net_batchnorm, net_depth, net_res, net_res_deep, net_res_deep100")


def test_a_mistyped_option_gets_its_commands_usage(folder, tmp_path):
    """argparse answered `train --epochz 1` with the top-level usage, which lists only the commands."""
    code, stdout, stderr = run_cli("train", "--model", "net", "--epochz", 1, "--data", folder, "--out", tmp_path / "o")
    assert code == 2 and stdout == "" and not (tmp_path / "o").exists()
    assert stderr.startswith("usage: python -m training train ") and "--val-fraction" in stderr
    assert stderr.strip().splitlines()[-1] == "python -m training train: error: unrecognized arguments: --epochz 1"


@pytest.mark.parametrize("command", ["train", "zoo"])
def test_a_dataset_id_that_is_no_hub_id_is_an_argparse_error(folder, tmp_path, command):
    name = ["--model", "net"] if command == "train" else ["--models", "net"]
    code, stdout, stderr = run_cli(command, *name, "--data", folder, "--dataset-id", "my birds", "--out", tmp_path / "o")
    assert code == 2 and stdout == "" and not (tmp_path / "o").exists()
    assert stderr.strip().splitlines()[-1] == (f"python -m training {command}: error: argument --dataset-id: 'my birds' "
                                               "is not a Hub dataset id (such as uoft-cs/cifar10)")


def test_train_takes_a_nets_name_as_zoo_and_create_do(folder, tmp_path):
    """`zoo --models net-res`, `publish --only net-res` and convhub.create("net-res") took the Hub repo's spelling;
    `train --model` refused it."""
    code, stdout, stderr = run_cli("train", "--model", "net-res", "--data", folder, "--out", tmp_path / "m",
                                   "--epochs", 1, *FAST)
    assert code == 0, stderr
    assert "net_res: 16,130 params" in stdout
    assert json.loads((tmp_path / "m" / "config.json").read_text())["model_name"] == "net_res"
