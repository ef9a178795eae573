"""Nothing a user owned is lost: `train --out` / `zoo --out` are checked before any work, saves are atomic, and
Ctrl-C stops cleanly (issue #8). In-process through training.cli.main, plus one real subprocess for SIGINT."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import convhub
import pytest
import torch
from test_training_helpers import (  # noqa: F401 - one_torch_thread is an autouse fixture
    assert_user_error,
    make_image_folder,
    one_torch_thread,
    run_cli,
)
from training import artifacts, parallel

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--batch-size", "16", "--quiet", "--epochs", "1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("artifacts") / "data", 20)


def train(data, out, *extra):
    return run_cli("train", "--model", "net", "--data", data, "--out", out, *FAST, *extra)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_refused_before_any_work(code, stdout, stderr, *phrases):
    assert_user_error(code, stderr, *phrases)
    assert "data:" not in stdout  # the data was not even loaded


# --- train --out ----------------------------------------------------------------------------------------------------


def test_empty_out_is_refused_and_the_current_folder_is_untouched(data, tmp_path, monkeypatch):
    (tmp_path / "README.md").write_text("my project")
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    code, stdout, stderr = train(data, "")
    assert_refused_before_any_work(code, stdout, stderr, "--out is empty")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("out", [".", "project"])
def test_a_folder_that_is_not_a_model_is_never_written(data, tmp_path, monkeypatch, out):
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text("my project's readme")
    (project / "config.json").write_text('{"my": "settings"}')
    monkeypatch.chdir(project if out == "." else tmp_path)
    before = snapshot(project)
    for extra in ([], ["--overwrite"]):
        code, stdout, stderr = train(data, out, *extra)
        assert_refused_before_any_work(code, stdout, stderr, "holds other files than a convhub model")
        assert snapshot(project) == before


def test_a_model_folder_with_extra_files_is_not_a_model_folder(data, tmp_path):
    convhub.create("net").save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "notes.txt").write_text("mine")
    code, stdout, stderr = train(data, tmp_path / "m", "--overwrite")
    assert_refused_before_any_work(code, stdout, stderr, "holds other files")
    assert (tmp_path / "m" / "notes.txt").read_text() == "mine"


def test_replacing_a_model_needs_overwrite(data, tmp_path):
    torch.manual_seed(123)
    convhub.create("net").save_pretrained(tmp_path / "m")
    before = snapshot(tmp_path / "m")
    code, stdout, stderr = train(data, tmp_path / "m")
    assert_refused_before_any_work(code, stdout, stderr, "already holds a model", "--overwrite")
    assert snapshot(tmp_path / "m") == before

    code, _, stderr = train(data, tmp_path / "m", "--overwrite")
    assert code == 0, stderr
    assert snapshot(tmp_path / "m") != before
    assert artifacts.read_record(tmp_path / "m")["epochs"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary folders left beside it
    assert (tmp_path / "m").stat().st_mode & 0o777 == 0o777 & ~current_umask()


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_an_empty_folder_is_used(data, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, stderr = train(data, tmp_path / "empty")
    assert code == 0, stderr
    assert isinstance(convhub.load(tmp_path / "empty"), convhub.Net)


def test_out_that_is_a_file_is_refused_before_training(data, tmp_path):
    (tmp_path / "file").write_text("keep me")
    code, stdout, stderr = train(data, tmp_path / "file")
    assert_refused_before_any_work(code, stdout, stderr, "is a file, not a folder")
    code, stdout, stderr = train(data, tmp_path / "file" / "inside")
    assert_refused_before_any_work(code, stdout, stderr, "is a file")
    assert (tmp_path / "file").read_text() == "keep me"


def test_out_that_is_a_symlink_is_refused(data, tmp_path):
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    code, stdout, stderr = train(data, tmp_path / "link")
    assert_refused_before_any_work(code, stdout, stderr, "symbolic link")


def test_unwritable_out_is_refused_before_training(data):
    code, stdout, stderr = train(data, "/proc/convhub-model")  # /proc takes no new folders, even from root
    assert_refused_before_any_work(code, stdout, stderr, "cannot write in /proc")


def test_new_nested_out_is_created_only_when_saving(data, tmp_path):
    code, _, stderr = train(data, tmp_path / "a" / "b" / "net")
    assert code == 0, stderr
    assert isinstance(convhub.load(tmp_path / "a" / "b" / "net"), convhub.Net)


# --- atomic saves ---------------------------------------------------------------------------------------------------


def test_a_save_that_fails_half_way_leaves_the_previous_model_whole(data, tmp_path, monkeypatch):
    """Disk full while the weights are written: the old model still loads, and no partial folder remains."""
    import safetensors.torch

    torch.manual_seed(5)
    convhub.create("net").save_pretrained(tmp_path / "m")
    before = snapshot(tmp_path / "m")

    def disk_full(model, filename, *args, **kwargs):
        Path(filename).write_bytes(b"\x00" * 100)  # a partial file, as a full disk leaves it
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_model", disk_full)
    code, stdout, stderr = train(data, tmp_path / "m", "--overwrite")
    assert code != 0 and "No space left on device" in stderr + stdout
    assert snapshot(tmp_path / "m") == before
    assert isinstance(convhub.load(tmp_path / "m"), convhub.Net)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_a_folder_that_changed_during_training_is_not_replaced(tmp_path):
    """Checked again at the swap: a file the user put there meanwhile survives, and the new model is kept too."""
    out = tmp_path / "m"
    convhub.create("net").save_pretrained(out)
    artifacts.check_model_out(out, overwrite=True)
    (out / "notes.txt").write_text("written during training")
    with pytest.raises(artifacts.OutputError, match="changed while this ran .* the new files are in") as info:
        artifacts.save(convhub.create("net"), out, record=None)
    assert (out / "notes.txt").read_text() == "written during training"
    kept = Path(str(info.value).rsplit(" ", 1)[-1])
    assert isinstance(convhub.load(kept), convhub.Net)


# --- zoo --out ------------------------------------------------------------------------------------------------------


def test_zoo_refuses_a_folder_with_foreign_files(data, tmp_path):
    (tmp_path / "z").mkdir()
    (tmp_path / "z" / "thesis.tex").write_text("years of work")
    code, stdout, stderr = run_cli("zoo", "--models", "net", "--data", data, "--out", tmp_path / "z", *FAST)
    assert_refused_before_any_work(code, stdout, stderr, "holds files that are not a zoo's (thesis.tex)")
    assert [p.name for p in (tmp_path / "z").iterdir()] == ["thesis.tex"]


def test_zoo_checks_every_net_folder_before_the_first_net_trains(data, tmp_path):
    code, _, stderr = run_cli("zoo", "--models", "net,net_depth", "--data", data, "--out", tmp_path / "z", *FAST)
    assert code == 0, stderr
    before = snapshot(tmp_path / "z")
    code, stdout, stderr = run_cli("zoo", "--models", "net,net_depth", "--data", data, "--out", tmp_path / "z", *FAST)
    assert_refused_before_any_work(code, stdout, stderr, "already holds net, net_depth: to train them again, pass "
                                   "--overwrite (`python -m training report --out")
    assert snapshot(tmp_path / "z") == before
    code, _, stderr = run_cli("zoo", "--models", "net,net_depth", "--data", data, "--out", tmp_path / "z",
                              "--overwrite", *FAST)
    assert code == 0, stderr
    assert json.loads((tmp_path / "z" / "results.json").read_text())[0]["model"] == "net"


def test_an_interrupted_zoo_is_told_how_to_train_only_the_nets_it_lacks(data, tmp_path):
    """A zoo stopped after some nets were saved: run again, it said only "pass --overwrite", which trains again
    what is already there (minutes of the deep nets)."""
    zoo = tmp_path / "my zoo"
    code, _, stderr = run_cli("zoo", "--models", "net", "--data", data, "--out", zoo, *FAST)
    assert code == 0, stderr
    before = snapshot(zoo)
    code, stdout, stderr = run_cli("zoo", "--models", "fc,net,net_depth", "--data", data, "--out", zoo, *FAST)
    assert_refused_before_any_work(code, stdout, stderr, f"--out {zoo} already holds net: to train only the rest, "
                                   "run the zoo again with --models fc,net_depth (the results table keeps the nets "
                                   "already there); to train it again, pass --overwrite")
    assert snapshot(zoo) == before
    (zoo / "net_depth").mkdir()
    (zoo / "net_depth" / "notes.txt").write_text("mine")  # a folder the advice would not train into: said first
    code, stdout, stderr = run_cli("zoo", "--models", "fc,net,net_depth", "--data", data, "--out", zoo, *FAST)
    assert_refused_before_any_work(code, stdout, stderr, "net_depth is a folder that holds other files")
    (zoo / "net_depth" / "notes.txt").unlink()
    code, _, stderr = run_cli("zoo", "--models", "fc,net_depth", "--data", data, "--out", zoo, *FAST)
    assert code == 0, stderr
    assert [row["model"] for row in json.loads((zoo / "results.json").read_text())] == ["fc", "net", "net_depth"]
    code, stdout, stderr = run_cli("zoo", "--models", "fc,net,net_depth", "--data", data, "--out", zoo, *FAST)
    assert_refused_before_any_work(code, stdout, stderr, f"`python -m training report --out '{zoo}'` rebuilds")


def test_translation_curves_sit_next_to_the_zoo_and_a_retrain_keeps_them(data, tmp_path):
    zoo = tmp_path / "z"
    code, _, stderr = run_cli("zoo", "--models", "fc,net", "--data", data, "--out", zoo, *FAST)
    assert code == 0, stderr
    secret = tmp_path / "secret.txt"
    secret.write_text("not ours")
    (zoo / "translation.json").symlink_to(secret)  # replaced, never written through
    code, stdout, stderr = run_cli("translation", "--models", zoo, "--data", data)
    assert code == 0, stderr
    assert secret.read_text() == "not ours" and not (zoo / "translation.json").is_symlink()
    header, *rows = [line for line in stdout.splitlines() if not line.startswith("data:")][:3]
    assert header.split()[:4] == ["model", "/", "shift", "-8"] and [row.split()[0] for row in rows] == ["fc", "net"]
    table = json.loads((zoo / "translation.json").read_text())
    assert table["shifts"] == list(range(-8, 9)) and set(table["accuracy"]) == {"fc", "net"}
    for name in ("fc", "net"):  # unshifted, the curve is the net's validation accuracy as its card says
        record = artifacts.read_record(zoo / name)
        assert table["accuracy"][name][8] == pytest.approx(record["val_accuracy"], abs=1e-4)
        assert all(0.0 <= a <= 1.0 for a in table["accuracy"][name]) and len(table["accuracy"][name]) == 17
    # Other validation images (another seed, a folder of 8) were measured and written over the curves of the images
    # the cards report on.
    few = make_image_folder(tmp_path / "few", 20)
    n_val = artifacts.read_record(zoo / "net")["n_val"]
    for argv, given in ((["--data", data, "--seed", "1"], f"({n_val}: seeded class-balanced 10% of it (seed 1))"),
                        (["--data", few, "--val-fraction", "0.2"], "(8: seeded class-balanced 20% of it (seed 0))")):
        code, _, stderr = run_cli("translation", "--models", zoo, *argv)
        assert_user_error(code, stderr, f"the nets' cards report on other validation images than --data gives {given}"
                                        f": fc, net on {n_val} (seeded class-balanced 10% of it (seed 0)). Pass the "
                                        "data the nets were trained on, with their --seed and --val-fraction; nothing "
                                        "was written")
        assert json.loads((zoo / "translation.json").read_text()) == table
    copy = shutil.copytree(data, tmp_path / "a copy")  # the same images under another name: the same curves
    code, _, stderr = run_cli("translation", "--models", zoo, "--data", copy)
    assert code == 0, stderr
    assert json.loads((zoo / "translation.json").read_text()) == table
    code, _, stderr = run_cli("zoo", "--models", "fc,net", "--data", data, "--out", zoo, "--overwrite", *FAST)
    assert code == 0, stderr  # translation.json belongs to a zoo folder
    assert json.loads((zoo / "translation.json").read_text()) == table


def test_zoo_with_an_empty_out_is_refused(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = run_cli("zoo", "--models", "net", "--data", data, "--out", "", *FAST)
    assert_refused_before_any_work(code, stdout, stderr, "--out is empty")
    assert list(tmp_path.iterdir()) == []


# --- Ctrl-C ---------------------------------------------------------------------------------------------------------


def test_ctrl_c_during_training_is_one_line_and_exit_130(tmp_path):
    data = make_image_folder(tmp_path / "data", 100)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "training", "train", "--model", "net_res_deep", "--data", str(data), "--epochs", "500",
         "--out", str(tmp_path / "out"), "--quiet"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # Ctrl-C's default, also where this test runs in the background (a shell then starts it with SIGINT ignored,
        # and Python keeps that)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in process.stdout:  # the net is built and training starts right after this line
        if "params" in line:
            break
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "Traceback" not in stderr
    assert [line for line in stderr.splitlines() if line.strip()] == [
        "interrupted: train stopped; models saved before this point are kept, the one in progress was not saved"]
    assert not (tmp_path / "out").exists()


CTRL_C_IGNORED = {"preexec_fn": lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)}  # a script's background job
CTRL_C_DEFAULT = {"preexec_fn": lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)}


@pytest.mark.parametrize("stop, started", [(signal.SIGINT, CTRL_C_DEFAULT), (signal.SIGTERM, CTRL_C_DEFAULT),
                                           (signal.SIGTERM, CTRL_C_IGNORED)], ids=["ctrl-c", "term", "term-bg"])
def test_stopping_a_zoo_side_by_side_stops_every_net_unsaved(tmp_path, stop, started):
    """Ctrl-C is how the zoo stops its nets, also when whatever started the zoo ignores it (nets inherit that)."""
    out = tmp_path / "out"
    # both deep nets are built and training; `net` waits for a free core
    process = _zoo_training_two_nets(tmp_path, "net,net_res_deep,net_res_deep100", **started)
    try:
        process.send_signal(stop)  # to the zoo alone (its nets run in sessions of their own): it passes it on
        stdout, stderr = process.communicate(timeout=120)
    finally:
        _kill_what_is_left(process, out)
    assert process.returncode == 130
    assert "Traceback" not in stderr + stdout and "ended by" not in stderr  # none was killed
    assert stderr.strip().endswith("interrupted: zoo stopped; models saved before this point are kept, the nets in "
                                   "progress were not saved")
    for name in ("net_res_deep", "net_res_deep100"):
        assert f"[{name}] interrupted: train stopped" in stderr
    assert "[net]" not in stdout  # no net starts after the stop
    assert not out.exists() or not any(out.iterdir())
    assert not _processes_naming(out)  # no net goes on training on its own


@pytest.mark.parametrize("started", [{}, CTRL_C_IGNORED], ids=["fg", "bg"])
def test_a_zoo_killed_outright_takes_its_nets_with_it(tmp_path, started):
    """SIGKILL (the OOM killer, `kill -9`) gives the zoo no chance to stop its nets, each in a session of its own:
    the kernel stops them (PR_SET_PDEATHSIG), so that none trains on alone, nor to remove its temporary files."""
    out = tmp_path / "out"
    process = _zoo_training_two_nets(tmp_path, "net_res_deep,net_res_deep100", **started)
    try:
        nets = [proc for proc in _processes_naming(out) if int(proc.name) != process.pid]
        assert len(nets) == 2
        process.kill()
        process.wait(timeout=60)
        for _ in range(600):  # each net stops as on Ctrl-C: within a step
            if not _processes_naming(out):
                break
            time.sleep(0.1)
        assert not _processes_naming(out)
    finally:
        _kill_what_is_left(process, out)
    assert not out.exists() or not any(out.iterdir())  # nothing saved
    assert not any((tmp_path / "tmp").iterdir())  # nor left behind: the data the nets read had no name


def test_a_net_that_crashes_in_a_zoo_says_where_and_how_it_ended(tmp_path):
    """A net killed by a signal prints nothing of its own: the zoo says how it ended, and the net's faulthandler where
    it was (a crash in a native library was silence)."""
    out = tmp_path / "out"
    process = _zoo_training_two_nets(tmp_path, "net_res_deep,net_res_deep100")
    try:
        crashed = next(proc for proc in _processes_naming(out) if "--model=net_res_deep " in _cmdline(proc) + " ")
        os.kill(int(crashed.name), signal.SIGSEGV)
        deadline = time.monotonic() + 60
        while crashed.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)  # the other net would train on for its 500 epochs
        stdout, stderr = process.communicate(timeout=120)
    finally:
        _kill_what_is_left(process, out)
    assert "[net_res_deep] Fatal Python error: Segmentation fault" in stderr
    assert "[net_res_deep] ended by SIGSEGV\n" in stderr
    assert "[net_res_deep100] interrupted: train stopped" in stderr and "ended by" not in stderr.split("SIGSEGV", 1)[1]
    assert not (out / "net_res_deep").exists() or not (out / "net_res_deep" / "model.safetensors").exists()


def test_a_zoo_stopped_while_its_nets_start_stops_them_without_a_traceback(tmp_path):
    """Ctrl-C reaches a net that is still loading torch: it stops with a line (it printed a KeyboardInterrupt
    traceback, and the zoo added "ended by SIGINT")."""
    out = tmp_path / "out"
    process = _zoo(tmp_path, "net_res_deep,net_res_deep100", **CTRL_C_DEFAULT)
    try:
        for _ in range(1200):  # until both nets are inside `import torch` (its library mapped), which takes seconds
            if len([proc for proc in _processes_naming(out) if "--model=" in _cmdline(proc)
                    and _has_mapped(proc, "libtorch")]) == 2:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the nets never started loading torch")
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        _kill_what_is_left(process, out)
    assert process.returncode == 130
    assert "Traceback" not in stderr + stdout and "ended by" not in stderr, stderr
    assert stderr.strip().endswith("interrupted: zoo stopped; models saved before this point are kept, the nets in "
                                   "progress were not saved")
    assert not out.exists() or not any(out.iterdir())


# What a Ctrl-C did to `import torch` in a net of a zoo, seen in CI: numpy's extension module, interrupted while it
# initialised, failed on its second load instead of passing the KeyboardInterrupt on.
CTRL_C_LOST = """import os, signal, time
try:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)
except KeyboardInterrupt:
    pass
"""
CTRL_C_THEN_IMPORT_ERROR = CTRL_C_LOST + 'raise ImportError("cannot load module more than once per process")\n'
CTRL_C_SWALLOWED = CTRL_C_LOST + "main = lambda: 0\n"
# And seen in CI: the Ctrl-C handled inside torch.distributed's C++ start, where an exception cannot pass (pybind11
# aborted: "terminate called after throwing an instance of 'pybind11::error_already_set'"). A finaliser is such a
# place in Python itself: what is raised there is printed with its traceback and dropped.
CTRL_C_WHERE_NOTHING_CAN_BE_RAISED = """import os, signal, time
class Finalised:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
Finalised()
main = lambda: 0
"""


@pytest.mark.parametrize("cli", [CTRL_C_THEN_IMPORT_ERROR, CTRL_C_SWALLOWED, CTRL_C_WHERE_NOTHING_CAN_BE_RAISED],
                         ids=["import-error", "swallowed", "unraisable"])
def test_a_ctrl_c_while_training_starts_stops_it_with_a_line_whatever_the_import_does(tmp_path, cli):
    """`python -m training`'s own start (training/__main__.py and starting.py, the real files) with a stand-in for
    the import of its CLI, which gets a Ctrl-C where it fails another way, is swallowed or cannot be raised: a line
    and exit 130, not a traceback (a zoo's net printed one in CI) nor a run the zoo asked to stop."""
    package = tmp_path / "training"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for real in ("__main__.py", "starting.py"):
        (package / real).symlink_to(ROOT / "training" / real)
    (package / "cli.py").write_text(cli)
    result = subprocess.run([sys.executable, "-m", "training"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60, env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"},
                            **CTRL_C_DEFAULT)
    assert result.returncode == 130, result.stderr
    assert result.stderr.strip() == "interrupted while starting: nothing was done", result.stderr


def test_a_net_that_loses_the_zoos_ctrl_c_gets_it_again_before_it_is_killed():
    """A KeyboardInterrupt raised while an extension module initialises can be swallowed (seen with triton's, which
    torch imports when a net builds its optimizer): the zoo says Ctrl-C again rather than wait 30 s and kill."""
    loses_the_first = ("import signal, sys, time\n"
                       "def second(*_): sys.exit(130)\n"
                       "signal.signal(signal.SIGINT, lambda *_: signal.signal(signal.SIGINT, second))\n"
                       "print('ready', flush=True)\n"
                       "time.sleep(120)\n")
    process = subprocess.Popen([sys.executable, "-c", loses_the_first], stdout=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        assert process.stdout.readline() == "ready\n"
        parallel._stop(process)
    finally:
        process.kill()
        process.communicate()
    assert process.returncode == 130  # it stopped itself; a kill would be -9


def _zoo(tmp_path: Path, models: str, **popen) -> subprocess.Popen:
    """`zoo --jobs 2 --epochs 500` on small data into tmp_path/out, with TMPDIR tmp_path/tmp, just started."""
    data = make_image_folder(tmp_path / "data", 100)
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TMPDIR": str(tmp_path / "tmp")}
    return subprocess.Popen(
        [sys.executable, "-m", "training", "zoo", "--models", models, "--data", str(data), "--epochs", "500",
         "--out", str(tmp_path / "out"), "--jobs", "2", "--quiet"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _zoo_training_two_nets(tmp_path: Path, models: str, **popen) -> subprocess.Popen:
    """_zoo, once two of its nets have been built and are training."""
    process = _zoo(tmp_path, models, **popen)
    started = set()
    try:
        for line in process.stdout:
            if "params" in line:
                started.add(line.split("]")[0])
            if len(started) == 2:
                break
    except BaseException:
        process.kill()
        raise
    return process


def _kill_what_is_left(zoo: subprocess.Popen, out: Path) -> None:
    """The zoo and whatever of it a test left running."""
    zoo.kill()
    for proc in _processes_naming(out):
        os.kill(int(proc.name), signal.SIGKILL)


def _processes_naming(path: Path) -> list[Path]:
    return [proc for proc in Path("/proc").glob("[0-9]*") if str(path) in _cmdline(proc)]


def _has_mapped(proc: Path, library: str) -> bool:
    try:
        return library in (proc / "maps").read_text(errors="replace")
    except OSError:
        return False


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# --- what a hostile or odd folder must not make us do (review findings) --------------------------------------------


def test_zoo_report_files_that_are_links_are_refused_and_never_written_through(data, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    (tmp_path / "z").mkdir()
    (tmp_path / "z" / "results.json").symlink_to(secret)
    code, stdout, stderr = run_cli("zoo", "--models", "net", "--data", data, "--out", tmp_path / "z", *FAST)
    assert_refused_before_any_work(code, stdout, stderr, "holds files that are not a zoo's (results.json)")
    assert secret.read_text() == "not yours"


def test_a_report_replaces_a_link_in_place_instead_of_writing_through_it(tmp_path):
    from training import report

    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    (tmp_path / "results.md").symlink_to(secret)
    record = {"model_name": "net", "params": 18090, "val_accuracy": 0.9, "train_accuracy": 0.9, "epochs": 1,
              "seconds": 1.0, "recipe": "default"}
    report.write_report([record], tmp_path)
    assert secret.read_text() == "not yours" and not (tmp_path / "results.md").is_symlink()


def _trained_card(folder: Path, **changes) -> Path:
    """A saved `net` whose card's training record has ``changes`` made to it (None: the key removed), as a card
    written by hand could have."""
    from huggingface_hub import ModelCard

    record = {"model_name": "net", "params": 18090, "val_accuracy": 0.9, "train_accuracy": 0.9, "epochs": 1,
              "seconds": 1.0, "recipe": "default"}
    artifacts.save(convhub.create("net"), folder, record)
    card = ModelCard.load(folder / "README.md")
    card.data.convhub = {k: v for k, v in {**card.data.convhub, **changes}.items() if v is not None}
    card.save(folder / "README.md")
    return folder


@pytest.mark.parametrize("command", ["report", "translation"])
def test_report_and_translation_never_write_through_a_link_planted_in_their_folder(data, tmp_path, command):
    """`report --out DIR` and `translation --models DIR` write into a folder someone else may have filled. Links
    stand at the names the files are written under (and at the temporary names they used to be written under);
    a file outside must stay as it is."""
    outside = tmp_path / "outside.sh"
    outside.write_text("#!/bin/sh\necho mine\n")
    folder = tmp_path / "zoo"
    _trained_card(folder / "net")
    names = (["results.md", "results.json", "accuracy_vs_params.png"] if command == "report"
             else ["translation.json"])
    for name in names:
        stem, suffix = os.path.splitext(name)
        for planted in (name, f".{name}.tmp{suffix}"):
            (folder / planted).symlink_to(outside)
    if command == "report":
        code, _, stderr = run_cli("report", "--out", folder)
    else:
        code, _, stderr = run_cli("translation", "--models", folder, "--data", data)
    assert code == 0, stderr
    assert outside.read_text() == "#!/bin/sh\necho mine\n"
    for name in names:
        assert (folder / name).is_file() and not (folder / name).is_symlink()
        assert oct((folder / name).stat().st_mode & 0o777) == oct(0o666 & ~_umask())


@pytest.mark.parametrize("command", ["report", "translation", "publish"])
def test_a_net_folder_that_is_a_link_is_not_followed(data, tmp_path, command):
    """A folder of trained nets where `net` links to a model elsewhere: that model would go into the table, the
    curves, or onto the Hub."""
    from training import publish

    _trained_card(tmp_path / "elsewhere" / "net")
    folder = tmp_path / "zoo"
    _trained_card(folder / "net_width")
    (folder / "net").symlink_to(tmp_path / "elsewhere" / "net")
    if command == "publish":
        with pytest.raises(artifacts.OutputError, match="zoo/net is a link to a folder: only the folders inside"):
            publish.plan("alice", source=folder)
        return
    extra = ["--data", data] if command == "translation" else []
    code, stdout, stderr = run_cli(command, "--models" if command == "translation" else "--out", folder, *extra)
    assert_user_error(code, stderr, "zoo/net is a link to a folder: only the folders inside")
    assert not (folder / "results.md").exists() and not (folder / "translation.json").exists()


@pytest.mark.parametrize("command", ["report", "translation"])
def test_a_folder_standing_where_a_file_is_written_is_one_error(data, tmp_path, command):
    folder = tmp_path / "zoo"
    _trained_card(folder / "net")
    name = "results.json" if command == "report" else "translation.json"
    (folder / name).mkdir()
    extra = ["--data", data] if command == "translation" else []
    code, stdout, stderr = run_cli(command, "--models" if command == "translation" else "--out", folder, *extra)
    assert_user_error(code, stderr, f"{name}")
    assert "Traceback" not in stderr and not list(folder.glob(".*.tmp"))


def test_report_writes_only_in_a_zoos_folder_and_reads_only_its_nets(tmp_path):
    """`report --out` replaced the results.md of any folder holding one trained net (a folder of the user's own),
    and read every folder in it, a save's leftover copy too (the net was in the table twice)."""
    project = tmp_path / "project"
    _trained_card(project / "my_model")
    (project / "results.md").write_text("my own notes")
    assert_user_error(*run_cli("report", "--out", project)[::2], "holds files that are not a zoo's ('my_model')")
    assert (project / "results.md").read_text() == "my own notes"

    zoo = tmp_path / "zoo"
    _trained_card(zoo / "net")
    shutil.copytree(zoo / "net", zoo / ".net.tmp-abcd1234")  # what a save killed half-way leaves
    code, stdout, stderr = run_cli("report", "--out", zoo)
    assert code == 0, stderr
    assert [row["model"] for row in json.loads((zoo / "results.json").read_text())] == ["net"]


def test_a_saves_leftovers_do_not_block_the_zoos_folder(data, tmp_path):
    """A save killed outright (the OOM killer, SIGKILL after a stop's grace) leaves its temporary folder; the zoo
    refused the folder from then on, --overwrite too."""
    zoo = tmp_path / "z"
    assert run_cli("zoo", "--models", "net", "--data", data, "--out", zoo, *FAST)[0] == 0
    (zoo / ".net.tmp-vr7c8s_r").mkdir()
    (zoo / ".results.json.k3j_x1ab.tmp").write_text("{")
    code, stdout, stderr = run_cli("zoo", "--models", "net", "--data", data, "--out", zoo, "--overwrite", *FAST)
    assert code == 0, stderr
    (zoo / ".bashrc").write_text("not ours")
    code, stdout, stderr = run_cli("zoo", "--models", "net", "--data", data, "--out", zoo, "--overwrite", *FAST)
    assert_refused_before_any_work(code, stdout, stderr, "holds files that are not a zoo's (.bashrc)")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("command", ["report", "publish"])
def test_a_card_that_is_a_link_is_not_read(tmp_path, command):
    """A model folder's README.md linked to a file elsewhere: its words would go into the results table, or into the
    card published to the Hub."""
    from training import publish

    folder = tmp_path / "zoo"
    _trained_card(folder / "net")
    elsewhere = tmp_path / "notes.md"
    elsewhere.write_text((folder / "net" / "README.md").read_text().replace("default", "private-notes"))
    (folder / "net" / "README.md").unlink()
    (folder / "net" / "README.md").symlink_to(elsewhere)
    if command == "report":
        code, _, stderr = run_cli("report", "--out", folder)
        assert_user_error(code, stderr, "README.md is not a regular file")
        assert not (folder / "results.md").exists()
    else:
        with pytest.raises(artifacts.OutputError, match="README.md is not a regular file"):
            publish.dry_run(publish.plan("alice", source=folder), tmp_path / "out")
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("record, message", [
    ({"val_accuracy": None}, "lacks 'val_accuracy'"),
    ({"params": None, "seconds": None}, "lacks 'params', 'seconds'"),
    ({"model_name": "net\nssh-ed25519 AAAA attacker"}, "'model_name' must be a name"),
    ({"recipe": "default | injected |"}, "'recipe' must be a name"),
])
@pytest.mark.parametrize("command", ["report", "publish"])
def test_a_card_whose_record_is_partial_or_not_a_name_is_one_error(tmp_path, record, message, command):
    """Every field the table, the Space and the Hub's model-index need (a KeyError traceback before), and names that
    cannot break a table's line."""
    from training import publish

    folder = tmp_path / "zoo"
    _trained_card(folder / "net", **record)
    if command == "report":
        code, _, stderr = run_cli("report", "--out", folder)
        assert_user_error(code, stderr, message)
    else:
        with pytest.raises(convhub.ConvHubError, match=message):
            publish.dry_run(publish.plan("alice", source=folder), tmp_path / "out")


def test_a_model_saved_meanwhile_is_not_replaced_without_overwrite(tmp_path):
    out = tmp_path / "m"
    artifacts.check_model_out(out)  # new at the start
    convhub.create("net").save_pretrained(out)  # another run saves there while we train
    before = snapshot(out)
    with pytest.raises(artifacts.OutputError, match="changed while this ran"):
        artifacts.save(convhub.create("net"), out, record=None)
    assert snapshot(out) == before
    artifacts.save(convhub.create("net"), out, record=None, overwrite=True)
    assert snapshot(out) != before


def test_out_dot_in_an_empty_folder_saves_there(data, tmp_path, monkeypatch):
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    code, _, stderr = train(data, ".")
    assert code == 0, stderr
    assert isinstance(convhub.load(tmp_path / "here"), convhub.Net)


@pytest.mark.parametrize("kind", ["fifo", "link to a big file", "other library's config"])
def test_a_folder_is_a_model_only_if_convhub_saved_it(tmp_path, kind):
    import os

    folder = tmp_path / "m"
    folder.mkdir()
    if kind == "fifo":
        os.mkfifo(folder / "config.json")  # reading it would block forever
    elif kind == "link to a big file":
        (folder / "config.json").symlink_to("/dev/zero")  # reading it would never end
    else:
        (folder / "config.json").write_text('{"architecture": "resnet50", "num_classes": 1000}')
    assert artifacts.is_model_folder(folder) is False
    with pytest.raises(artifacts.OutputError, match="holds other files than a convhub model"):
        artifacts.check_model_out(folder, overwrite=True)


def test_copy_regular_file_copies_only_the_file_it_checked(tmp_path):
    """Opened without following a link and checked on the open file: a link swapped in between a check and the
    copy cannot be followed, and a FIFO is refused without waiting for a writer."""
    import os

    (tmp_path / "plain.json").write_text("{}")
    assert artifacts.copy_regular_file(tmp_path / "plain.json", tmp_path / "copy.json").read_text() == "{}"
    (tmp_path / "secret").write_text("api key")
    (tmp_path / "link.json").symlink_to(tmp_path / "secret")
    os.mkfifo(tmp_path / "fifo.json")
    for name in ("link.json", "fifo.json"):
        with pytest.raises(artifacts.OutputError, match=f"{name} is not a regular file"):
            artifacts.copy_regular_file(tmp_path / name, tmp_path / f"out-{name}")
        assert not (tmp_path / f"out-{name}").exists()


def test_publish_never_copies_what_a_link_points_to(tmp_path):
    from training import publish

    source = tmp_path / "trained"
    convhub.create("net").save_pretrained(source / "net")
    secret = tmp_path / "secret.txt"
    secret.write_text("api key")
    (source / "results.json").symlink_to(secret)
    plan = publish.plan("alice", source=source)
    with pytest.raises(artifacts.OutputError, match="results.json is not a regular file"):
        publish.dry_run(plan, tmp_path / "out")
    assert not (tmp_path / "out").exists()
