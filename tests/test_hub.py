"""convhub.load and from_pretrained: loading errors, offline behaviour, and downloads from a Hub-compatible server.

What is real and what is simulated in the download tests (`olah_hub`, see conftest.py):
- real: huggingface_hub's own download client (snapshot_download -> repo_info, list_repo_tree, hf_hub_download), its
  HF cache on disk, convhub's resolve/probe/error handling, and an HTTP server that speaks the Hub's download API:
  olah, a self-hosted Hub mirror, run as a subprocess on 127.0.0.1;
- simulated: huggingface.co itself. olah runs in offline mode and serves local git repositories (its mirrors path)
  that the tests create with `git` from save_pretrained folders, instead of proxying the Hub. Repos are public and no
  token is sent; uploads (which olah cannot serve) are tested in test_training_publish.py.
The offline tests need no server: HF_HUB_OFFLINE=1, or HF_ENDPOINT at a port on 127.0.0.1 where nothing listens.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import threading
import time

import convhub
import convhub.hub
import pytest
import torch
from conftest import free_port
from convhub.models import CONFIG_FORMAT

pytestmark = pytest.mark.usefixtures("one_thread", "hub_env")

REPO = "someone/convhub-net"


def batch(n: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(7))


def outputs(model) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(batch())


def expected(seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return outputs(convhub.create("net"))


@pytest.fixture
def folder(tmp_path):
    """A saved Net (seed 0)."""
    torch.manual_seed(0)
    path = tmp_path / "net"
    convhub.create("net").save_pretrained(path)
    return path


def edit_config(folder, **changes):
    path = folder / "config.json"
    config = {**json.loads(path.read_text()), **changes}
    path.write_text(json.dumps({k: v for k, v in config.items() if v is not None}))


# --- local folders: errors -------------------------------------------------------------------------------------


def test_load_of_a_local_folder(folder):
    assert torch.equal(outputs(convhub.load(folder)), expected(0))
    assert torch.equal(outputs(convhub.load(str(folder))), expected(0))


def test_hf_hub_names_the_hub_only_as_in_timm(folder, tmp_path, monkeypatch):
    """hf-hub: loaded a local folder: hf-hub:someone/convhub-net read ./someone/convhub-net where there was one."""
    with pytest.raises(convhub.ConvHubError, match=r"^hf-hub:'.+' names no Hub repo: hf-hub: takes a repo id"):
        convhub.load(f"hf-hub:{folder}")
    monkeypatch.chdir(tmp_path)
    shutil.copytree(folder, tmp_path / REPO)  # a folder named as the Hub repo, here
    assert torch.equal(outputs(convhub.load(REPO)), expected(0))  # a path: the folder
    with pytest.raises(convhub.HubUnavailableError, match=f"^'{REPO}' is a Hub repo, .+ the HF cache holds no"):
        convhub.load(f"hf-hub:{REPO}")  # offline, and the HF cache has no copy
    # nor does create's pretrained=True take a folder standing where its repo's name points
    monkeypatch.setenv("CONVHUB_NAMESPACE", REPO.split("/")[0])
    with pytest.raises(convhub.HubUnavailableError, match=f"^'{REPO}' is a Hub repo, "):
        convhub.create("net", pretrained=True)
    # a path object, as os.scandir gives one, is the folder's path
    [entry] = [e for e in os.scandir(tmp_path / REPO.split("/")[0])]
    assert torch.equal(outputs(convhub.load(entry)), expected(0))


def test_folder_without_config(tmp_path):
    with pytest.raises(convhub.ConvHubError, match="no config.json.*save_pretrained"):
        convhub.load(tmp_path)


def test_folder_with_weights_but_no_config(folder):
    (folder / "config.json").unlink()
    with pytest.raises(convhub.ConvHubError, match="no config.json"):
        convhub.load(folder)
    with pytest.raises(convhub.ConvHubError, match="no config.json"):
        convhub.Net.from_pretrained(folder)


def test_unknown_architecture(folder):
    edit_config(folder, architecture="ResNet152")
    with pytest.raises(convhub.ConvHubError, match="unknown architecture 'ResNet152'") as info:
        convhub.load(folder)
    assert "NetResDeep" in str(info.value)  # names the known ones


def test_config_without_architecture(folder):
    edit_config(folder, architecture=None)
    with pytest.raises(convhub.ConvHubError, match="names no 'architecture'"):
        convhub.load(folder)


@pytest.mark.parametrize("loader", [convhub.load, convhub.Net.from_pretrained])
def test_config_from_a_newer_convhub(folder, loader):
    edit_config(folder, format_version=CONFIG_FORMAT + 1, convhub_version="9.0.0")
    with pytest.raises(convhub.ConvHubError, match="upgrade") as info:
        loader(folder)
    assert "9.0.0" in str(info.value) and "pip install -U convhub" in str(info.value)
    edit_config(folder, convhub_version=convhub.__version__)  # a hand-edited format: no "saved by" this version
    with pytest.raises(convhub.ConvHubError, match=rf"has config format {CONFIG_FORMAT + 1} \(this convhub "
                                                   rf"{convhub.__version__} reads format {CONFIG_FORMAT}\): upgrade"):
        loader(folder)


def test_config_of_the_current_format_loads(folder):
    edit_config(folder, format_version=CONFIG_FORMAT)
    assert isinstance(convhub.load(folder), convhub.Net)


@pytest.mark.parametrize("text", ['{"architecture": "Net",', "", "\xff\xfe not json", "[1, 2]", '"Net"'])
def test_malformed_config(folder, text):
    (folder / "config.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(convhub.ConvHubError, match="config.json"):
        convhub.load(folder)


def test_missing_weights(folder):
    (folder / "model.safetensors").unlink()
    with pytest.raises(convhub.ConvHubError, match="no model.safetensors"):
        convhub.load(folder)


def test_pickled_weights_are_not_loaded(folder):
    """A folder with a pytorch_model.bin instead of safetensors is refused: nothing is ever unpickled."""
    torch.save(convhub.create("net").state_dict(), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(convhub.ConvHubError, match="safetensors weights only"):
        convhub.load(folder)


@pytest.mark.parametrize("keep", [0, 5, 100, 0.5, -1])
def test_truncated_weights(folder, keep):
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep if keep >= 0 else len(data) + keep
    weights.write_bytes(data[:n])
    with pytest.raises(convhub.ConvHubError, match="model.safetensors"):
        convhub.load(folder)


def test_weights_that_do_not_fit_the_config(folder):
    edit_config(folder, architecture="NetWidth", n_chans1=32)  # (NetWidth(16) has exactly the shapes of Net)
    with pytest.raises(convhub.ConvHubError, match="do not fit NetWidth"):
        convhub.load(folder)


@pytest.mark.parametrize("name", ["not a repo!", "a/b/c", "ns/name?", "ns//name", "-ns/name", "x" * 200 + "/y"])
def test_invalid_repo_id(name):
    start = time.monotonic()
    with pytest.raises(convhub.ConvHubError, match=r"^no folder .+, nor is it a Hub repo id \('namespace/name'\)$"):
        convhub.load(name)
    assert time.monotonic() - start < 5


def test_a_mistyped_path_says_there_is_no_such_folder(folder):
    """A typo in a path was "neither a local folder nor a valid Hub repo id: Repo id must be in the form
    'repo_name' or 'namespace/repo_name'...", huggingface_hub's words about repo ids."""
    with pytest.raises(convhub.ConvHubError, match=r"^no folder '.+/nett', nor is it a Hub repo id"):
        convhub.load(folder.parent / "nett")
    with pytest.raises(convhub.ConvHubError, match="model.safetensors' is a file: pass the folder that holds "
                                                   "config.json and model.safetensors"):
        convhub.load(folder / "model.safetensors")
    with pytest.raises(convhub.ConvHubError, match=r"^cannot read '.*aaaa.*: File name too long$"):
        convhub.load(folder.parent / ("a" * 300))  # an OSError traceback from Path.is_dir


def test_a_revision_with_a_local_folder_is_refused_not_ignored(folder):
    """The folder was loaded whatever it held: a pinned revision that silently meant nothing."""
    with pytest.raises(convhub.ConvHubError, match="is a local folder: revision='v1' applies to Hub repos only"):
        convhub.load(folder, revision="v1")


def test_bare_name_is_neither_a_folder_nor_a_repo_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(convhub.ConvHubError, match="namespace/name"):
        convhub.load("convhub-net")


# --- offline ---------------------------------------------------------------------------------------------------


def test_offline_mode_fails_fast_and_names_the_setting(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(convhub.HubUnavailableError, match="HF_HUB_OFFLINE") as info:
        convhub.load(REPO)
    assert time.monotonic() - start < 5
    assert isinstance(info.value, convhub.ConvHubError) and isinstance(info.value, ConnectionError)
    assert REPO in str(info.value)


def test_offline_mode_refuses_before_any_connection(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", lambda *a: pytest.fail("offline mode opened a connection"))
    with pytest.raises(convhub.HubUnavailableError):
        convhub.load(REPO, revision="v1")
    with pytest.raises(convhub.HubUnavailableError):
        convhub.Net.from_pretrained(REPO)


def test_unreachable_endpoint_fails_fast():
    """HF_ENDPOINT (set by hub_env) is a port on 127.0.0.1 where nothing listens."""
    start = time.monotonic()
    with pytest.raises(convhub.HubUnavailableError, match="cannot be reached") as info:
        convhub.load(REPO)
    assert time.monotonic() - start < 5
    assert convhub.hub.endpoint() in str(info.value)


@pytest.mark.parametrize("value", ["ftp://127.0.0.1:9", "127.0.0.1:8090", "http://127.0.0.1:99999", "http://[::1",
                                   "http://127.0.0.1:8090/?x=1", ""])
def test_a_malformed_endpoint_is_one_error_naming_hf_endpoint_before_any_connection(monkeypatch, value):
    """An operator's typo in HF_ENDPOINT: not "the Hub cannot be reached" (ftp://, no scheme), nor a ValueError from
    deep in the client (a port of 99999, an unclosed '[')."""
    monkeypatch.setenv("HF_ENDPOINT", value)
    monkeypatch.setattr(socket.socket, "connect", lambda *a: pytest.fail("a malformed endpoint was connected to"))
    with pytest.raises(convhub.ConvHubError, match=r"^HF_ENDPOINT must be the Hub's http\(s\) URL"):
        convhub.load(REPO)


def test_a_malformed_endpoint_is_the_same_error_where_huggingface_hub_is_not_yet_imported():
    """A fresh process: huggingface_hub parses HF_ENDPOINT at its import, and convhub.create("net"), which needs no
    Hub, was a ValueError from there ("Port out of range")."""
    import os
    import subprocess
    import sys

    code = ("import convhub\nprint(convhub.CIFAR2_CLASSES)\n"  # no Hub in it: no error
            "try:\n    convhub.create('net')\nexcept convhub.ConvHubError as error:\n    print(error)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "HF_ENDPOINT": "http://user:secretpw@127.0.0.1:99999"})
    assert result.returncode == 0, result.stderr[-2000:]
    classes, message = result.stdout.splitlines()
    assert classes == "('airplane', 'bird')"
    assert message.startswith("HF_ENDPOINT must be the Hub's http(s) URL") and "'http://127.0.0.1:99999'" in message
    assert "secretpw" not in result.stdout + result.stderr


@pytest.mark.parametrize("value, used", [("http://127.0.0.1:8090/", "http://127.0.0.1:8090"),
                                         ("https://hub.example.org/mirror", "https://hub.example.org/mirror"),
                                         ("http://[::1]:8080", "http://[::1]:8080")])
def test_an_endpoint_is_used_as_given_without_its_trailing_slash(monkeypatch, value, used):
    monkeypatch.setenv("HF_ENDPOINT", value)
    assert convhub.hub.endpoint() == used


@pytest.mark.parametrize("revision", ["main", "v1.0", "feature/x", "0123456789abcdef0123456789abcdef01234567"])
def test_a_branch_tag_or_commit_is_a_revision(revision):
    convhub.hub.check_revision(revision)


@pytest.mark.parametrize("revision", ["", "v 1", "a..b", "HEAD", "x.lock", "-x", "x/", "@{1}", "a\nb"])
def test_a_revision_git_would_refuse_is_refused_naming_the_setting(revision):
    with pytest.raises(convhub.ConvHubError, match="^SOME_SETTING .* is not a branch name git accepts"):
        convhub.hub.check_revision(revision, "SOME_SETTING")


def test_a_namespace_must_name_hub_repos():
    convhub.hub.check_namespace("Alice-Org")
    for namespace in ("alice/team", "a b", "../x", "x" * 100, ""):
        with pytest.raises(convhub.ConvHubError, match="^CONVHUB_NAMESPACE .* cannot name a Hub repo"):
            convhub.hub.check_namespace(namespace, "CONVHUB_NAMESPACE")


def test_unreachable_endpoint_is_probed_once(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    probes = []
    real = socket.create_connection
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: probes.append(a) or real(*a, **k))
    for _ in range(3):
        with pytest.raises(convhub.HubUnavailableError):
            convhub.load(REPO)
    assert len(probes) == 1  # cached for convhub.hub._PROBE_TTL_S


# --- a Hub that accepts connections and never answers ------------------------------------------------------------


def test_a_hub_that_never_answers_fails_within_seconds(silent_hub):
    """It hung for the full 1100 s tried: the TCP probe only caught refused connections."""
    start = time.monotonic()
    with pytest.raises(convhub.HubUnavailableError, match="cannot be reached") as info:
        convhub.load("someone/missing")
    assert time.monotonic() - start < convhub.hub.PROBE_TIMEOUT_S + 10  # a bound on hanging, not a speed figure
    assert silent_hub.url in str(info.value)
    with pytest.raises(convhub.HubUnavailableError):
        convhub.create("net", pretrained=True, namespace="someone")


def test_a_hub_that_answers_the_probe_then_hangs_fails_within_its_timeout(monkeypatch):
    """The probe passes; the metadata request then hangs. Every request of the client has a timeout."""
    from conftest import SilentServer
    from huggingface_hub.utils import _http

    server = SilentServer(answer_probe=True)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setattr(convhub.hub, "HUB_TIMEOUT_S", 2.0)
    _http.close_session()  # the next request builds the shared client with the short timeout
    try:
        start = time.monotonic()
        with pytest.raises(convhub.HubUnavailableError, match="did not answer within 2 s"):
            convhub.load("someone/hangs")
        assert time.monotonic() - start < 30
        assert any(r.startswith(b"GET /api/models/someone/hangs") for r in server.requests)
    finally:
        server.close()
        _http.close_session()


def test_hub_requests_get_timeouts_but_a_users_own_client_factory_is_kept():
    """The user's factory still builds the client (its settings kept), and every client it builds has the checks:
    huggingface_hub builds a new one after a connection error, which had none."""
    from huggingface_hub.utils import _http

    convhub.hub.bound_hub_requests()
    assert convhub.hub._bound_timeouts in _http.get_session().event_hooks["request"]
    built = []

    def mine():
        client = _http.default_client_factory()
        built.append(client)
        return client

    _http.set_client_factory(mine)
    try:
        convhub.hub.bound_hub_requests()
        convhub.hub.bound_hub_requests()  # wrapped once
        for _ in range(2):  # the first client, then one rebuilt as after a connection error
            client = _http.get_session()
            assert client is built[-1] and convhub.hub._check_answer in client.event_hooks["response"]
            assert client.event_hooks["response"].count(convhub.hub._check_answer) == 1
            _http.close_session()
        assert len(built) == 2
    finally:
        _http.set_client_factory(convhub.hub._bounded_client)


# --- a real download client against olah --------------------------------------------------------------------------


@pytest.fixture
def published(olah_hub, tmp_path):
    """REPO on the server with two commits: v1 (tagged; seed 0) and main (seed 1). Returns (sha_v1, sha_main)."""
    repo_id = f"ns{time.monotonic_ns()}/convhub-net"  # a fresh repo per test: the server outlives the test
    shas = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        convhub.create("net").save_pretrained(tmp_path / f"seed{seed}")
        shas.append(olah_hub.publish(tmp_path / f"seed{seed}", repo_id, f"seed {seed}", tag="v1" if seed == 0 else None))
    return repo_id, shas


def test_download_gives_the_published_weights(published, hub_env):
    repo_id, (sha_v1, sha_main) = published
    model = convhub.load(repo_id)
    assert isinstance(model, convhub.Net) and not model.training
    assert torch.equal(outputs(model), expected(1))
    snapshot = hub_env / f"models--{repo_id.replace('/', '--')}" / "snapshots" / sha_main
    assert {p.name for p in snapshot.iterdir()} == {"config.json", "model.safetensors", "README.md"}
    assert (hub_env / f"models--{repo_id.replace('/', '--')}" / "refs" / "main").read_text() == sha_main


def test_download_of_a_revision(published):
    repo_id, (sha_v1, sha_main) = published
    assert torch.equal(outputs(convhub.load(repo_id, revision="v1")), expected(0))
    assert torch.equal(outputs(convhub.load(repo_id, revision=sha_v1)), expected(0))
    assert torch.equal(outputs(convhub.load(repo_id, revision="main")), expected(1))
    assert torch.equal(outputs(convhub.load(f"hf-hub:{repo_id}", revision=sha_main)), expected(1))


def test_download_through_the_mixin_and_create(published):
    repo_id, _ = published
    assert torch.equal(outputs(convhub.Net.from_pretrained(repo_id, revision="v1")), expected(0))
    assert torch.equal(outputs(convhub.ConvHubModel.from_pretrained(repo_id)), expected(1))
    assert torch.equal(outputs(convhub.create(f"hf-hub:{repo_id}")), expected(1))
    with pytest.raises(convhub.ConvHubError, match="holds a Net, not a NetResDeep"):
        convhub.NetResDeep.from_pretrained(repo_id)


def test_download_into_a_cache_dir(published, hub_env, tmp_path):
    repo_id, _ = published
    cache = tmp_path / "other-cache"
    assert torch.equal(outputs(convhub.load(repo_id, cache_dir=cache)), expected(1))
    assert (cache / f"models--{repo_id.replace('/', '--')}").is_dir()
    assert not (hub_env / f"models--{repo_id.replace('/', '--')}").exists()


def test_missing_repo(olah_hub):
    start = time.monotonic()
    with pytest.raises(convhub.ConvHubError, match="does not exist") as info:
        convhub.load("nobody/convhub-missing")
    assert time.monotonic() - start < 10
    assert not isinstance(info.value, convhub.HubUnavailableError)
    assert olah_hub.url in str(info.value)


def test_missing_revision(published):
    repo_id, _ = published
    with pytest.raises(convhub.ConvHubError) as info:
        convhub.load(repo_id, revision="v99")
    assert not isinstance(info.value, convhub.HubUnavailableError)
    assert repo_id in str(info.value)


def test_repo_that_is_not_a_convhub_model(olah_hub, tmp_path):
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "README.md").write_text("# not a model\n")
    olah_hub.publish(tmp_path / "files", "ns/just-a-readme")
    with pytest.raises(convhub.ConvHubError, match="no config.json"):
        convhub.load("ns/just-a-readme")


def test_new_commit_is_picked_up(published, olah_hub, tmp_path):
    repo_id, _ = published
    assert torch.equal(outputs(convhub.load(repo_id)), expected(1))
    torch.manual_seed(2)
    convhub.create("net").save_pretrained(tmp_path / "seed2")
    olah_hub.publish(tmp_path / "seed2", repo_id, "seed 2")
    assert torch.equal(outputs(convhub.load(repo_id)), expected(2))


def test_offline_load_uses_the_cache_after_a_download(published, monkeypatch):
    repo_id, (sha_v1, _) = published
    online = outputs(convhub.load(repo_id))
    convhub.load(repo_id, revision="v1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", lambda *a: pytest.fail("offline load opened a connection"))
    start = time.monotonic()
    assert torch.equal(outputs(convhub.load(repo_id)), online)
    assert time.monotonic() - start < 5
    assert torch.equal(outputs(convhub.load(repo_id, revision="v1")), expected(0))
    assert torch.equal(outputs(convhub.load(repo_id, revision=sha_v1)), expected(0))
    assert torch.equal(outputs(convhub.Net.from_pretrained(repo_id)), online)
    with pytest.raises(convhub.HubUnavailableError, match="HF_HUB_OFFLINE.*'v2'"):
        convhub.load(repo_id, revision="v2")  # never downloaded
    with pytest.raises(convhub.HubUnavailableError, match="HF_HUB_OFFLINE"):
        convhub.load("ns/never-downloaded")


def test_unreachable_hub_uses_the_cache(published, monkeypatch, tmp_path):
    repo_id, _ = published
    cache = tmp_path / "cache"
    online = outputs(convhub.load(repo_id, cache_dir=cache))
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # the Hub went away
    start = time.monotonic()
    assert torch.equal(outputs(convhub.load(repo_id, cache_dir=cache)), online)
    assert time.monotonic() - start < 5
    with pytest.raises(convhub.HubUnavailableError, match="cannot be reached"):
        convhub.load(repo_id, cache_dir=tmp_path / "empty-cache")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert torch.equal(outputs(convhub.load(repo_id, cache_dir=cache)), online)
    with pytest.raises(convhub.HubUnavailableError, match="HF_HUB_OFFLINE"):
        convhub.load(repo_id)  # the default cache never saw it


def test_incomplete_cache_is_not_used_offline(published, hub_env, monkeypatch):
    repo_id, (_, sha_main) = published
    convhub.load(repo_id)
    snapshot = hub_env / f"models--{repo_id.replace('/', '--')}" / "snapshots" / sha_main
    (snapshot / "model.safetensors").unlink()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(convhub.HubUnavailableError, match="HF cache"):
        convhub.load(repo_id)


# --- create(name, pretrained=True), as timm's create_model ------------------------------------------------------------


def test_create_pretrained_loads_the_published_weights(published, monkeypatch):
    repo_id, _ = published
    namespace = repo_id.split("/")[0]
    model = convhub.create("net", pretrained=True, namespace=namespace)
    assert torch.equal(outputs(model), expected(1))  # main holds seed 1
    assert torch.equal(outputs(convhub.create("net", pretrained=True, namespace=namespace, revision="v1")), expected(0))
    monkeypatch.setenv("CONVHUB_NAMESPACE", namespace)
    assert torch.equal(outputs(convhub.create("net", pretrained=True)), expected(1))
    assert convhub.pretrained_repo("net_res_deep100") == f"{namespace}/convhub-net-res-deep100"


def test_create_pretrained_defaults_to_the_convhub_namespace_and_fails_fast_offline(monkeypatch):
    monkeypatch.delenv("CONVHUB_NAMESPACE", raising=False)
    assert convhub.pretrained_repo("net_res_deep") == "convhub/convhub-net-res-deep"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(convhub.HubUnavailableError, match="'convhub/convhub-net-res-deep' is a Hub repo, "
                                                          "HF_HUB_OFFLINE is set"):
        convhub.create("net_res_deep", pretrained=True)
    with pytest.raises(convhub.ConvHubError, match="pretrained weights fix the architecture"):
        convhub.create("net_res_deep", pretrained=True, n_blocks=3)


def test_create_says_what_its_pretrained_namespace_and_revision_are_for(tmp_path):
    """A folder given as pretrained was taken as True (the Hub's weights were fetched, the folder ignored), and
    namespace or revision without pretrained=True were ignored, a fresh net built."""
    convhub.create("net").save_pretrained(tmp_path / "net")
    for pretrained in (str(tmp_path / "net"), tmp_path / "net", 1):
        with pytest.raises(TypeError, match=r"pretrained is True or False, not \w+; convhub.load\(folder_or_repo\)"):
            convhub.create("net", pretrained=pretrained)
    for where in ({"namespace": "someone"}, {"revision": "v1"}):
        with pytest.raises(convhub.ConvHubError, match="namespace and revision choose the published weights: pass "
                                                       "pretrained=True"):
            convhub.create("net", **where)
    assert convhub.create("net", pretrained=False).training  # a fresh net, as before


# --- a Hub that drips its answers, or offers files no convhub model has --------------------------------------------


class ScriptedHub:
    """An HTTP server on 127.0.0.1 whose answers the test writes: `answer(method, path) -> (status, headers, body,
    drip_seconds)`; with drip_seconds, the headers go out one byte at a time (each read arrives in time, the whole
    never does). A body that is not bytes is an iterable of chunks, sent as they come."""

    def __init__(self, answer):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self):
                hub.requests.append((self.command, self.path))
                status, headers, body, drip = answer(self.command, self.path)
                # Connection: close, as this handler (HTTP/1.0) closes each connection after its answer: without it
                # the client could send its next request down a connection the server had just closed ("Server
                # disconnected without sending a response", once in a CI run).
                headers = {**headers, "Connection": "close"}
                head = f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
                try:
                    if drip:
                        for byte in head.encode():
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(drip)
                    elif isinstance(body, bytes) or self.command == "HEAD":
                        self.wfile.write(head.encode() + (body if self.command != "HEAD" else b""))
                    else:  # an iterable of chunks: a body that goes on (until the client hangs up)
                        self.wfile.write(head.encode())
                        for chunk in body:
                            self.wfile.write(chunk)
                            self.wfile.flush()
                except OSError:
                    pass

            do_GET = do_HEAD = do_POST = _reply

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def thread_ends(name: str, seconds: float = 10.0) -> bool:
    """Whether no thread of that name is left within ``seconds``."""
    for _ in range(int(seconds * 10)):
        if not [t for t in threading.enumerate() if t.name == name]:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def elsewhere():
    """Another server on this machine, which a hostile Hub names: no request may reach it."""
    server = ScriptedHub(lambda method, path: (200, {"Content-Length": "2"}, b"[]", None))
    yield server
    server.close()


@pytest.fixture
def scripted_hub(monkeypatch):
    servers = []

    def start(answer):
        server = ScriptedHub(answer)
        servers.append(server)
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        convhub.hub._probe_cache.clear()
        return server

    yield start
    for server in servers:
        server.close()


@pytest.mark.parametrize("value", ["soon", "0", "inf", "1e10"])  # 1e10 s overflowed the waiting thread's join()
def test_a_deadline_that_is_not_a_number_of_seconds_is_one_clear_error(monkeypatch, value):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CONVHUB_HUB_DEADLINE", value)
    must = f"CONVHUB_HUB_DEADLINE must be a number from 1 to 86,400, not '{value}'"
    with pytest.raises(convhub.ConvHubError, match=must):
        convhub.load("someone/net")


def test_a_hub_that_drips_its_answer_is_given_up_on_at_the_deadline(scripted_hub, monkeypatch):
    """Each byte arrives within the read timeout, the answer never completes: it held load() for 100 s and more."""
    monkeypatch.setenv("CONVHUB_HUB_DEADLINE", "3")
    scripted_hub(lambda method, path: (200, {"Content-Length": "0"}, b"", None) if method == "HEAD" and
                 path == "/api/models" else (200, {"Content-Type": "application/json"}, b"{}", 0.5))
    start = time.monotonic()
    with pytest.raises(convhub.HubUnavailableError, match="did not finish sending someone/drip within 3 s"):
        convhub.load("someone/drip")
    assert time.monotonic() - start < 10
    # and the request stops with it (it held its thread and socket until the whole answer had dripped in)
    assert thread_ends("convhub-hub: sending someone/drip")


def test_a_dripping_probe_counts_as_unreachable(scripted_hub):
    scripted_hub(lambda method, path: (200, {"Content-Length": "0"}, b"", 0.5))
    start = time.monotonic()
    assert convhub.hub.hub_reachable() is False
    assert time.monotonic() - start < convhub.hub.PROBE_TIMEOUT_S + 3


def test_files_larger_than_a_convhub_model_has_are_not_downloaded(scripted_hub):
    commit = "a" * 40

    def answer(method, path):
        if path == "/api/models":
            return 200, {"Content-Length": "0"}, b"", None
        if path.startswith("/api/models/someone/huge"):
            return listing(commit, ["config.json"])
        if method == "HEAD" and path.endswith("/config.json"):
            size = str(400 * 2**20)
            return 200, {"X-Repo-Commit": commit, "ETag": f'"{"b" * 40}"', "Content-Length": size}, b"", None
        return 404, {"Content-Length": "0"}, b"", None

    hub = scripted_hub(answer)
    with pytest.raises(convhub.ConvHubError, match="config.json is 419,430,400 bytes; at most 65,536 are expected"):
        convhub.load("someone/huge")
    assert not [r for r in hub.requests if r[0] == "GET" and "/resolve/" in r[1]]  # nothing was downloaded


@pytest.mark.parametrize(("status", "headers", "body"), [
    (302, {"Location": "/api/models/someone/loop/revision/main"}, b""),  # a redirect loop
    (200, {"Content-Type": "application/json"}, b'{"sha": 12, "siblings": "not a list"}'),  # the wrong shape
])
def test_odd_answers_are_convhub_errors(scripted_hub, status, headers, body):
    scripted_hub(lambda method, path: (200, {"Content-Length": "0"}, b"", None) if path == "/api/models" else
                 (status, {**headers, "Content-Length": str(len(body))}, body, None))
    with pytest.raises(convhub.ConvHubError):
        convhub.load("someone/loop")


# --- a Hub that answers with paths, endless bodies or redirects (review findings) ------------------------------------
# huggingface_hub writes the HF cache at paths made of the Hub's answers: blobs/<ETag>, snapshots/<commit>,
# refs/<revision>, .no_exist/<commit>/<file>. An ETag of ../../.. wrote a file of the server's choosing anywhere.


def listing(commit: str, names) -> tuple:
    body = json.dumps({"id": "someone/net", "sha": commit, "siblings": [{"rfilename": n} for n in names]}).encode()
    return 200, {"Content-Type": "application/json", "Content-Length": str(len(body))}, body, None


def honest_hub(folder, commit: str = "c" * 40, tweak=None):
    """Answers as the Hub does for a repo holding ``folder``'s files at ``commit``; ``tweak(method, path, answer)``
    may change any answer."""
    files = {p.name: p.read_bytes() for p in folder.iterdir()}

    def answer(method, path):
        if path == "/api/models":
            reply = 200, {"Content-Length": "0"}, b"", None
        elif path.startswith("/api/models/") and "/tree/" in path:  # snapshot_download's listing
            body = json.dumps([{"type": "file", "path": n, "size": len(d), "oid": hashlib.sha1(d).hexdigest()}
                               for n, d in files.items()]).encode()
            reply = 200, {"Content-Type": "application/json", "Content-Length": str(len(body))}, body, None
        elif path.startswith("/api/models/"):
            reply = listing(commit, files)
        elif "/resolve/" in path and path.rsplit("/", 1)[-1] in files:
            data = files[path.rsplit("/", 1)[-1]]
            reply = 200, {"X-Repo-Commit": commit, "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                          "Content-Length": str(len(data))}, data, None
        else:
            reply = 404, {"Content-Length": "0", "X-Repo-Commit": commit}, b"", None
        return tweak(method, path, reply) if tweak else reply

    return answer


def files_under(path) -> list:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


def test_an_honest_hub_gives_the_repos_weights(scripted_hub, folder):
    scripted_hub(honest_hub(folder))
    assert torch.equal(outputs(convhub.load("someone/net")), expected(0))


def _with_header(name, value, on="README.md"):
    def tweak(method, path, reply):
        status, headers, body, drip = reply
        return (status, {**headers, name: value}, body, drip) if path.endswith(f"/{on}") else reply
    return tweak


@pytest.mark.parametrize("header, message", [
    ("ETag", "an ETag that is not a file's hash"),
    ("X-Linked-Etag", "an X-Linked-Etag that is not a file's hash"),
    ("X-Repo-Commit", "a commit id that is not one"),
])
def test_a_hub_answer_naming_a_path_writes_nothing_outside_the_cache(scripted_hub, folder, tmp_path, header, message):
    target = tmp_path / "outside" / "planted"
    value = "../" * 30 + str(target).lstrip("/")
    scripted_hub(honest_hub(folder, tweak=_with_header(header, f'"{value}"' if "Etag" in header else value)))
    with pytest.raises(convhub.ConvHubError, match=message):
        convhub.load("someone/net")
    assert files_under(tmp_path / "outside") == [] and not target.parent.exists()


def test_the_listings_commit_id_is_never_a_path(scripted_hub, folder, tmp_path):
    """snapshot_download wrote trees/<sha>.json and refs/main from the listing's sha: any .json file replaced."""
    victim = tmp_path / "victim" / "config.json"
    victim.parent.mkdir()
    victim.write_text('{"mine": true}')

    def tweak(method, path, reply):
        return listing("../" * 30 + str(victim.with_suffix("")).lstrip("/"), ["config.json", "model.safetensors"]) \
            if path.startswith("/api/models/someone") else reply

    scripted_hub(honest_hub(folder, tweak=tweak))
    assert torch.equal(outputs(convhub.load("someone/net")), expected(0))  # the files' own commit is used
    assert victim.read_text() == '{"mine": true}' and files_under(victim.parent) == [victim]


def test_files_answered_from_two_commits_are_refused_as_such(scripted_hub, folder, hub_env):
    """The weights are fetched at the commit config.json came from; a Hub that answers them from another one (a
    mirror mid-sync, a hostile server) gave "has no config.json: it is not a convhub model"."""
    def tweak(method, path, reply):
        status, headers, body, drip = reply
        if path.endswith("/model.safetensors") and "X-Repo-Commit" in headers:
            headers = {**headers, "X-Repo-Commit": "d" * 40}
        return status, headers, body, drip

    scripted_hub(honest_hub(folder, tweak=tweak))
    with pytest.raises(convhub.ConvHubError, match=(
            "the Hub's answers about 'someone/net' came from two commits: config.json from cccccccccccc, "
            "model.safetensors from dddddddddddd; try again later")):
        convhub.load("someone/net")


@pytest.mark.parametrize("what", ["file", "listing"])
def test_a_body_longer_than_its_kind_can_be_is_cut_off(scripted_hub, folder, hub_env, what):
    """A HEAD's size is only a claim: the GET went on past it (a GB and more into the cache, or into memory)."""
    def endless():
        while True:
            yield b"x" * 65536

    def tweak(method, path, reply):
        status, headers, body, drip = reply
        if method == "GET" and (path.endswith("/config.json") if what == "file" else path.startswith("/api/models/")):
            return status, {k: v for k, v in headers.items() if k != "Content-Length"}, endless(), drip
        return reply

    scripted_hub(honest_hub(folder, tweak=tweak))
    limit = "65,536" if what == "file" else f"{convhub.hub.MAX_ANSWER_BYTES:,}"
    with pytest.raises(convhub.ConvHubError, match=f"went on past {limit} bytes"):
        convhub.load("someone/net")
    assert sum(p.stat().st_size for p in files_under(hub_env)) < 2 * 2**20


def test_a_redirect_to_another_host_is_not_followed(scripted_hub, folder, elsewhere):
    """A redirect sent the download to any address (a service on this machine, another on its network)."""
    target = f"{elsewhere.url}/internal/admin?action=delete"  # another service on the same machine
    scripted_hub(honest_hub(folder, tweak=lambda method, path, reply: (
        (302, {"Location": target, "Content-Length": "0"}, b"", None) if path.endswith("/config.json") else reply)))
    with pytest.raises(convhub.ConvHubError, match="a redirect to 'http://127.0.0.1:.*' \\(another server\\)"):
        convhub.load("someone/net")
    assert elsewhere.requests == []


def test_a_revision_that_is_a_path_is_refused_before_any_request(scripted_hub, folder):
    hub = scripted_hub(honest_hub(folder))
    with pytest.raises(convhub.ConvHubError, match="is not a branch name git accepts"):
        convhub.load("someone/net", revision="../" * 8 + "tmp/x")
    assert hub.requests == []


def test_a_cached_ref_naming_a_folder_outside_the_cache_is_not_loaded_offline(hub_env, folder, monkeypatch):
    """A cache an older client wrote from a hostile answer: refs/main names a folder anywhere on the disk."""
    import shutil

    repo = hub_env / "models--someone--net"
    (repo / "refs").mkdir(parents=True)
    (repo / "snapshots").mkdir()
    elsewhere = hub_env.parent / "elsewhere"
    shutil.copytree(folder, elsewhere)
    (repo / "refs" / "main").write_text("../../../elsewhere")  # from snapshots/: hub_env's parent
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(convhub.ConvHubError, match="is not where a download puts it"):
        convhub.load("someone/net")


def test_a_download_abandoned_at_its_deadline_stops(scripted_hub, folder, monkeypatch):
    """within_deadline gives up on a thread it cannot stop: its requests now stop with it (the thread went on
    downloading after load() had failed)."""
    monkeypatch.setenv("CONVHUB_HUB_DEADLINE", "2")

    def slow():
        while True:
            time.sleep(0.2)
            yield b"x" * 1024

    def tweak(method, path, reply):
        status, headers, body, drip = reply
        if method == "GET" and path.endswith("/model.safetensors"):
            return status, {k: v for k, v in headers.items() if k != "Content-Length"}, slow(), drip
        return reply

    scripted_hub(honest_hub(folder, tweak=tweak))
    with pytest.raises(convhub.HubUnavailableError, match="did not finish sending someone/net within 2 s"):
        convhub.load("someone/net")
    assert thread_ends("convhub-hub: sending someone/net")  # at the next chunk


# --- the second review of these checks -------------------------------------------------------------------------------


def test_a_redirect_out_of_a_repos_files_is_refused(scripted_hub, folder, tmp_path):
    """The ETag was checked on /resolve/ answers only: a redirect to /x/README.md on the same server brought one of
    ../../.. back."""
    target = tmp_path / "outside" / "planted.pth"

    def tweak(method, path, reply):
        if path.endswith("/resolve/" + "c" * 40 + "/README.md"):
            return 302, {"Location": "/x/README.md", "Content-Length": "0"}, b"", None
        if path == "/x/README.md":
            return 200, {"X-Repo-Commit": "c" * 40, "ETag": '"' + "../" * 30 + str(target).lstrip("/") + '"',
                         "Content-Length": "4"}, b"evil", None
        return reply

    scripted_hub(honest_hub(folder, tweak=tweak))
    with pytest.raises(convhub.ConvHubError, match="an ETag that is not a file's hash"):
        convhub.load("someone/net")
    assert not target.parent.exists()


def test_an_encoded_body_is_refused_as_it_would_be_counted_encoded(scripted_hub, folder, hub_env):
    """Bodies are counted as they arrive: 1,452 bytes of gzip inside gzip became a 629 MB config.json."""
    import gzip

    bomb = gzip.compress(gzip.compress(b"{" + b" " * 2**22 + b"}"))

    def tweak(method, path, reply):
        status, headers, body, drip = reply
        if method == "GET" and path.endswith("/config.json"):
            return status, {**headers, "Content-Encoding": "gzip", "Content-Length": str(len(bomb))}, bomb, drip
        return reply

    scripted_hub(honest_hub(folder, tweak=tweak))
    with pytest.raises(convhub.ConvHubError, match="a body encoded as 'gzip' \\(identity was asked for\\)"):
        convhub.load("someone/net")
    assert sum(p.stat().st_size for p in files_under(hub_env)) < 2**20


def test_a_location_on_a_plain_answer_is_checked_as_a_redirect(scripted_hub, folder, elsewhere):
    """huggingface_hub downloads from a HEAD's Location whatever its status: a 200 sent the GET to any server."""
    scripted_hub(honest_hub(folder, tweak=_with_header("Location", f"{elsewhere.url}/latest/meta-data")))
    with pytest.raises(convhub.ConvHubError, match="\\(another server\\)"):
        convhub.load("someone/net")
    assert elsewhere.requests == []


def test_xet_answers_never_send_a_download_to_another_server(scripted_hub, folder, elsewhere):
    """A Xet answer had huggingface_hub call the route it names, and hf_xet download through a client of its own
    (no check, no cap, no deadline): Xet is off, the file comes over HTTP from the Hub."""
    def tweak(method, path, reply):
        status, headers, body, drip = reply
        if "/resolve/" in path and path.endswith("/model.safetensors"):
            headers = {**headers, "X-Xet-Hash": "ab" * 32, "X-Xet-Refresh-Route": f"{elsewhere.url}/refresh"}
        return status, headers, body, drip

    scripted_hub(honest_hub(folder, tweak=tweak))
    assert torch.equal(outputs(convhub.load("someone/net")), expected(0))
    assert elsewhere.requests == []


def test_a_cache_reached_through_a_link_still_loads(scripted_hub, folder, hub_env, monkeypatch):
    """huggingface_hub resolves the cache's path; the snapshot check compared it with the path as given."""
    from huggingface_hub import constants

    hub_env.mkdir(parents=True, exist_ok=True)
    (hub_env.parent / "linked").symlink_to(hub_env)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_env.parent / "linked"))
    scripted_hub(honest_hub(folder))
    assert torch.equal(outputs(convhub.load("someone/net")), expected(0))


def test_a_body_longer_than_the_head_said_is_a_convhub_error(scripted_hub, folder):
    def tweak(method, path, reply):
        status, headers, body, drip = reply
        if method == "GET" and path.endswith("/config.json"):
            return status, {**headers, "Content-Length": str(len(body) + 1)}, body + b" ", drip
        return reply

    scripted_hub(honest_hub(folder, tweak=tweak))
    with pytest.raises(convhub.ConvHubError, match="Consistency check failed"):
        convhub.load("someone/net")


def test_a_listings_next_page_on_another_server_is_refused(scripted_hub, elsewhere):
    from huggingface_hub import HfApi

    hub = scripted_hub(lambda method, path: (200, {"Content-Length": "2", "Link": f'<{elsewhere.url}/page2>; '
                                                   'rel="next"'}, b"[]", None))
    convhub.hub.bound_hub_requests()
    with pytest.raises(convhub.ConvHubError, match="a next page on another server"):
        list(HfApi(endpoint=hub.url).list_repo_tree("someone/data", repo_type="dataset"))
    assert elsewhere.requests == []


def test_a_hub_datasets_endless_listing_stops_at_the_deadline(scripted_hub, monkeypatch):
    """training's Hub datasets had no deadline: empty listing pages, each naming the next, went on for ever."""
    from training.data import DataError, load_hub_dataset

    monkeypatch.setenv("CONVHUB_HUB_DEADLINE", "2")
    commit = "d" * 40

    def answer(method, path):
        if path == "/api/models":
            return 200, {"Content-Length": "0"}, b"", None
        if path.startswith("/api/datasets/someone/endless/revision/"):
            body = json.dumps({"id": "someone/endless", "sha": commit}).encode()
            return 200, {"Content-Type": "application/json", "Content-Length": str(len(body))}, body, None
        page = int(path.rsplit("page=", 1)[1]) if "page=" in path else 0
        following = f"{server['url']}/api/datasets/someone/endless/tree/{commit}?page={page + 1}"
        return 200, {"Content-Length": "2", "Link": f'<{following}>; rel="next"'}, b"[]", None

    server = {}
    hub = scripted_hub(answer)
    server["url"] = hub.url
    with pytest.raises(DataError, match="did not finish listing someone/endless within 2 s"):
        load_hub_dataset("someone/endless")
    pages = len(hub.requests)
    time.sleep(1)
    assert len(hub.requests) <= pages + 1  # the listing stopped with the deadline


def test_the_hubs_own_answer_shapes_still_load(scripted_hub, folder):
    """What huggingface.co answers besides a file's hash: weak ETags (W/"46f-…") on its API answers and on the redirect
    of a small file to /api/resolve-cache/…, which huggingface_hub follows and whose ETag it never uses."""
    commit = "c" * 40
    weak = 'W/"46f-hgC1bPzJ3Wl7g5Ao2v+TBoFZ0w8"'
    honest = honest_hub(folder, commit)

    def answer(method, path):
        if path.startswith("/api/resolve-cache/models/someone/net/"):
            return honest(method, f"/someone/net/resolve/{commit}/{path.rsplit('/', 1)[1]}")
        status, headers, body, drip = honest(method, path)
        if path.endswith("/resolve/main/config.json"):
            return 307, {"Location": f"/api/resolve-cache/models/someone/net/{commit}/config.json", "ETag": weak,
                         "X-Repo-Commit": commit, "Content-Length": "0"}, b"", None
        return status, {**headers, "ETag": weak} if path.startswith("/api/") else headers, body, drip

    scripted_hub(answer)
    assert torch.equal(outputs(convhub.load("someone/net")), expected(0))


# --- a Hub whose headers are not what they claim, and messages that must not carry secrets (review, 2026-12-01) -----


@pytest.mark.parametrize("header, value, on", [  # no URL: httpx raises InvalidURL on it, which is no HTTPError
    ("Location", "http://[::1", "/api/models"),  # the probe's answer
    ("Link", '<http://[::1>; rel="next"', "/api/models"),
    ("Location", "http://[::1", "README.md"),  # a file's
])
def test_a_header_that_is_not_a_url_is_refused_not_raised(scripted_hub, folder, on, header, value):
    """A Location or next page that httpx cannot parse raised InvalidURL out of the answer check: out of load(), and
    out of the probe, which the Space runs as it starts (it crashed instead of using its bundled weights)."""
    honest = honest_hub(folder)
    scripted_hub(lambda method, path: (lambda reply: (reply[0], {**reply[1], header: value}, *reply[2:])
                                       if path == on or path.endswith(f"/{on}") else reply)(honest(method, path)))
    if on == "/api/models":
        assert convhub.hub.hub_reachable() is False
        with pytest.raises(convhub.HubUnavailableError, match="cannot be reached"):
            convhub.load("someone/net")
    else:
        with pytest.raises(convhub.ConvHubError, match="a redirect to something that is not a URL"):
            convhub.load("someone/net")


def test_a_size_in_digits_python_reads_but_int_does_not_is_still_an_answer(scripted_hub, folder):
    """'²' is a digit to str.isdigit(), not to int(): the size check raised ValueError out of the probe."""
    scripted_hub(honest_hub(folder, tweak=_with_header("X-Linked-Size", "²", on="api/models")))
    assert convhub.hub.hub_reachable() is True  # any answer is one
    assert torch.equal(outputs(convhub.load("someone/net")), expected(0))


def test_credentials_in_the_endpoint_never_reach_a_message(scripted_hub, monkeypatch):
    """huggingface_hub and httpx put the whole URL in their errors; an HF_ENDPOINT may carry user:password."""
    hub = scripted_hub(lambda method, path: (200, {"Content-Length": "0"}, b"", None) if path == "/api/models"
                       else (500, {"Content-Type": "application/json", "Content-Length": "2"}, b"{}", None))
    monkeypatch.setenv("HF_ENDPOINT", hub.url.replace("http://", "http://alice:s3cretpw@"))
    monkeypatch.setattr(convhub.hub.constants, "ENDPOINT", hub.url.replace("http://", "http://alice:s3cretpw@"))
    with pytest.raises(convhub.ConvHubError) as raised:
        convhub.load("someone/net")
    assert "500" in str(raised.value) and "s3cretpw" not in str(raised.value) and "alice" not in str(raised.value)
    assert any(path.startswith("/api/models/someone/net") for _, path in hub.requests)  # it did ask, and failed


def test_a_hubs_long_error_text_is_cut_short(scripted_hub):
    body = json.dumps({"error": "x" * 5_000_000}).encode()
    scripted_hub(lambda method, path: (200, {"Content-Length": "0"}, b"", None) if path == "/api/models"
                 else (400, {"Content-Type": "application/json", "Content-Length": str(len(body))}, body, None))
    with pytest.raises(convhub.ConvHubError) as raised:
        convhub.load("someone/net")
    assert "xxxx" in str(raised.value) and len(str(raised.value)) < 600


def test_a_name_starting_with_an_unknown_users_home_is_a_convhub_error():
    with pytest.raises(convhub.ConvHubError, match="no folder '~nosuchuser-convhub/net', nor is it a Hub repo id"):
        convhub.load("~nosuchuser-convhub/net")


def test_local_files_only_says_so_when_the_cache_has_no_copy(scripted_hub, folder):
    hub = scripted_hub(honest_hub(folder))
    with pytest.raises(convhub.HubUnavailableError, match="local_files_only is set") as raised:
        convhub.load("someone/net", local_files_only=True)
    assert "cannot be reached" not in str(raised.value) and hub.requests == []


def test_a_size_of_thousands_of_digits_is_no_crash_either(scripted_hub, folder):
    """int() refuses more than 4,300 digits: such an X-Linked-Size raised ValueError out of the answer check (and
    `push` showed a traceback: its token check does not expect one)."""
    scripted_hub(honest_hub(folder, tweak=_with_header("X-Linked-Size", "9" * 5000, on="api/models")))
    assert convhub.hub.hub_reachable() is True
    assert torch.equal(outputs(convhub.load("someone/net")), expected(0))


@pytest.mark.parametrize("userinfo", ["alice:s3cretpw@", "alice:p@ss@"])
def test_error_text_removes_any_password_even_one_with_an_at_sign(userinfo):
    error = RuntimeError(f"Server error '500 X' for url 'http://{userinfo}127.0.0.1:9/api/whoami-v2'")
    assert convhub.hub.error_text(error) == "Server error '500 X' for url 'http://127.0.0.1:9/api/whoami-v2'"


def test_error_text_hides_a_token_the_server_echoed():
    token = "hf_" + "aB3" * 11 + "x"
    shown = convhub.hub.error_text(RuntimeError(f"403 Forbidden: denied Bearer {token} for alice"))
    assert token not in shown and shown == "403 Forbidden: denied Bearer hf_… for alice"


def test_error_text_shows_control_characters_as_what_they_are_not():
    """ESC and BEL in a server's error set a terminal's colours and title, and erased the line of our message."""
    shown = convhub.hub.error_text(RuntimeError("\x1b[31mRED\x1b[0m \x1b]0;title\x07 \x1b[2K\rerror: fake"))
    assert shown.isprintable() and "\x1b" not in shown and shown.startswith("\ufffd[31mRED")
