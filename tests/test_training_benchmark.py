"""benchmarks/train_speed.py runs end to end (tiny synthetic folder, seconds): both recipes, ratio, per-net table."""

from __future__ import annotations

import importlib.util
import json
import platform
from pathlib import Path

import convhub
import pytest
from test_training_helpers import make_image_folder, one_torch_thread  # noqa: F401 - autouse fixture
from training.recipes import recipe_for

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "train_speed.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("train_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_compares_recipes_and_measures_each_net(bench, tmp_path, capsys):
    data = make_image_folder(tmp_path / "data", 40)
    code = bench.main(["--data", str(data), "--max-seconds", "20", "--models", "net,net_depth", "--quiet",
                       "--json", str(tmp_path / "speed.json")])
    assert code == 0
    result = json.loads((tmp_path / "speed.json").read_text())
    book, ours = result["runs"]
    assert book["run"] == "book" and book["precision"] == "fp32" and "SGD lr 0.01" in book["recipe"]
    assert ours["run"].startswith("ours") and "one-cycle" in ours["recipe"]
    for run in (book, ours):
        assert run["reached"] and run["epochs_to_target"] <= run["epochs_run"] <= 100
        assert 0 < run["seconds_to_target"] <= run["seconds_run"] and run["images_per_second"] > 0
    assert result["ratio"] == f"{book['seconds_to_target'] / ours['seconds_to_target']:.1f}x"
    assert [(n["model"], n["params"]) for n in result["per_net"]] == [
        (name, convhub.create(name).num_params) for name in ("net", "net_depth")]
    out = capsys.readouterr().out
    assert "| book | fp32 | yes |" in out and f"book / ours: **{result['ratio']}**" in out
    assert f"ours / book recipe: **{ours['images_per_second'] / book['images_per_second']:.2f}x**" in out
    assert "notebook loop (DataLoader, batch 64" in out and result["env"]["notebook_images_per_second"] > 0
    assert result["env"]["machine"]["cpu"] in out and "torch kernels" in out  # the CPU the figures came from
    assert f"| net_depth | {convhub.create('net_depth').num_params:,} |" in out


@pytest.mark.parametrize("block, named", [
    # two CPUs a cloud calls by one name (the Zen 2 and Zen 5 these benchmarks ran on), and an ARM board's
    ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 23\nmodel\t\t: 49\nmodel name\t: AMD EPYC\n",
     "AMD EPYC, family 23 model 49"),
    ("processor\t: 0\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\nflags\t\t: avx2 avx512f\n\n"
     "processor\t: 1\ncpu family\t: 99\nmodel\t\t: 9\nmodel name\t: AMD EPYC\n", "AMD EPYC, family 26 model 2"),
    ("processor\t: 0\nBogoMIPS\t: 48.00\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n", "aarch64"),
    ("processor\t: 0\ncpu family\t: 6\nmodel\t\t: \nmodel name\t: Some CPU\n", "Some CPU"),  # no model: the name
])
def test_the_cpu_is_told_apart_by_its_family_and_model(tmp_path, monkeypatch, block, named):
    from training import artifacts, hardware

    (tmp_path / "cpuinfo").write_text(block)
    monkeypatch.setattr(hardware, "CPUINFO", str(tmp_path / "cpuinfo"))
    monkeypatch.setattr(platform, "processor", lambda: "")  # as Linux says where /proc/cpuinfo names no model
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert hardware.cpu_model() == named
    assert f"cpu ({named}, " in artifacts.describe_device("cpu")  # what a card and a benchmark print


def test_benchmark_book_run_stops_at_max_seconds(bench, tmp_path, capsys):
    data = make_image_folder(tmp_path / "data", 20)
    code = bench.main(["--data", str(data), "--target", "1.01", "--max-seconds", "0", "--skip-per-net", "--quiet",
                       "--json", str(tmp_path / "speed.json")])
    assert code == 0
    book, ours = json.loads((tmp_path / "speed.json").read_text())["runs"]
    assert book["epochs_run"] == 1 and not book["reached"]  # the time cap ended it after one epoch
    assert not ours["reached"] and ours["epochs_run"] == recipe_for("net").epochs  # ran to its end
    assert "n/a" in capsys.readouterr().out



def test_recipe_sweep_runs_each_variant_on_each_seed(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("recipe_sweep", SCRIPT.parent / "recipe_sweep.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    data = make_image_folder(tmp_path / "data", 20)
    code = sweep.main(["--model", "net", "--data", str(data), "--seeds", "1,2", "--device", "cpu",
                       "--set", "epochs=1", "--set", "epochs=2,lr=0.2,nesterov=false,grad_clip=none"])
    assert code == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["seed"], r["epochs"]) for r in rows] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert rows[1]["overrides"] == {"epochs": 2, "lr": 0.2, "nesterov": False, "grad_clip": None}
    assert all(0 <= r["val_accuracy"] <= r["best_val_accuracy"] <= 1 for r in rows)
    with pytest.raises(SystemExit, match="unknown recipe field 'lrate'"):
        sweep.main(["--model", "net", "--data", str(data), "--set", "lrate=0.1"])
