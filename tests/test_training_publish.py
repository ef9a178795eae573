"""training.publish and `python -m training push`, without the real Hub (huggingface.co is not reachable here).

What is simulated, exactly:
- the Hub's HTTP endpoints, at the `huggingface_hub.HfApi` method boundary: `HfApi.create_repo`, `HfApi.create_branch`
  and `HfApi.upload_folder` are replaced by `FakeHub`, which records the calls and copies the uploaded folder
  (the temporary folder that `PyTorchModelHubMixin.push_to_hub` writes and uploads) so the test can inspect it;
  `HfApi.create_commit` is replaced by a function that fails the test, as nothing should reach it;
- the reachability probe: `training.publish.hub_reachable` (and `convhub.hub.hub_reachable`) return True;
- every socket connection fails the test, so nothing can leak past the fakes to the network.
Everything else is real: token resolution, check_can_push, convhub.load of the local folder, the mixin's
push_to_hub -> save_pretrained -> model card generation, and the CLI.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import convhub
import httpx2
import pytest
from huggingface_hub import CommitInfo, HfApi, ModelCard, RepoUrl
from huggingface_hub.errors import HfHubHTTPError
from safetensors.torch import load_file
from test_training_helpers import (  # noqa: F401 - fixtures: one_torch_thread (autouse), no_token
    assert_user_error,
    make_image_folder,
    no_token,
    one_torch_thread,
    run_cli,
)
from training import artifacts, publish
from training.publish import PublishError

ENDPOINT = "https://huggingface.co"


class FakeHub:
    """Records what would be sent to the Hub; `fail_on` names an HfApi method that answers with an HTTP error."""

    def __init__(self, root: Path):
        self.root = root
        self.calls: list[tuple[str, dict]] = []
        self.uploads: list[dict] = []
        self.fail_on: str | None = None

    def _http_error(self, method: str, status: int = 500):
        url = f"{ENDPOINT}/api/{method}"
        response = httpx2.Response(status, request=httpx2.Request("POST", url))
        return HfHubHTTPError(f"{status} Server Error: simulated failure of {method} for url: {url}", response=response)

    def install(self, monkeypatch) -> FakeHub:
        hub = self

        def create_repo(api, repo_id, *, private=None, exist_ok=False, **kwargs):
            hub.calls.append(("create_repo", {"repo_id": repo_id, "private": private, "exist_ok": exist_ok}))
            if hub.fail_on == "create_repo":
                raise hub._http_error("create_repo", 403)
            return RepoUrl(f"{ENDPOINT}/{repo_id}", endpoint=ENDPOINT)

        def create_branch(api, repo_id, *, branch, exist_ok=False, **kwargs):
            hub.calls.append(("create_branch", {"repo_id": repo_id, "branch": branch, "exist_ok": exist_ok}))
            if hub.fail_on == "create_branch":
                raise hub._http_error("create_branch")

        def upload_folder(api, *, repo_id, folder_path, revision=None, commit_message=None, **kwargs):
            hub.calls.append(("upload_folder", {"repo_id": repo_id, "revision": revision}))
            if hub.fail_on == "upload_folder":
                raise hub._http_error("upload_folder")
            copy = hub.root / f"upload{len(hub.uploads)}"
            shutil.copytree(folder_path, copy)  # the mixin deletes its temporary folder right after
            hub.uploads.append({"repo_id": repo_id, "revision": revision, "commit_message": commit_message,
                                "folder": copy, "files": sorted(p.name for p in copy.rglob("*") if p.is_file()),
                                "kwargs": kwargs})
            return CommitInfo(commit_url=f"{ENDPOINT}/{repo_id}/commit/{'0' * 40}", commit_message=commit_message,
                              commit_description="", oid="0" * 40)

        def create_commit(api, *args, **kwargs):
            raise AssertionError("create_commit reached: the upload went past the simulated boundary")

        def no_network(sock, *args, **kwargs):
            raise AssertionError(f"network access attempted: {args}")

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "create_branch", create_branch)
        monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
        monkeypatch.setattr(HfApi, "create_commit", create_commit)
        monkeypatch.setattr(socket.socket, "connect", no_network)
        monkeypatch.setattr(publish, "hub_reachable", lambda *a, **k: True)
        monkeypatch.setattr("convhub.hub.hub_reachable", lambda *a, **k: True)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        return self


@pytest.fixture
def hub(monkeypatch, tmp_path) -> FakeHub:
    (tmp_path / "hub").mkdir()
    return FakeHub(tmp_path / "hub").install(monkeypatch)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("publish") / "data", 30)


@pytest.fixture(scope="module")
def saved(folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("saved") / "net"
    code, _, stderr = run_cli("train", "--model", "net", "--data", folder, "--epochs", 2, "--batch-size", 16,
                              "--out", out, "--quiet")
    assert code == 0, stderr
    return out


@pytest.fixture
def model_dir(saved, tmp_path) -> Path:
    """A fresh copy of the trained folder, plus a stray pickle that must never be uploaded."""
    copy = tmp_path / "model"
    shutil.copytree(saved, copy)
    (copy / "training_state.pt").write_bytes(b"pickled optimizer state")
    return copy


def snapshot(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_push_uploads_weights_config_and_card_to_the_branch(hub, model_dir):
    before = snapshot(model_dir)
    url = publish.push(model_dir, "user/convhub-net", revision="v1", token="hf_x")

    assert url == f"{ENDPOINT}/user/convhub-net/commit/{'0' * 40}"
    names = [name for name, _ in hub.calls]
    assert names.count("upload_folder") == 1 and names[-1] == "upload_folder"
    assert names.index("create_repo") < names.index("create_branch") < names.index("upload_folder")
    assert hub.calls[names.index("create_branch")][1] == {"repo_id": "user/convhub-net", "branch": "v1",
                                                          "exist_ok": True}
    (upload,) = hub.uploads
    assert upload["repo_id"] == "user/convhub-net" and upload["revision"] == "v1"
    assert "net" in upload["commit_message"] and convhub.__version__ in upload["commit_message"]
    assert upload["files"] == ["README.md", "config.json", "model.safetensors"]  # no .bin/.pt/.pkl
    assert not [f for f in upload["files"] if f.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))]

    sent = upload["folder"]
    assert json.loads((sent / "config.json").read_text()) == json.loads((model_dir / "config.json").read_text())
    local_weights, sent_weights = load_file(model_dir / "model.safetensors"), load_file(sent / "model.safetensors")
    assert local_weights.keys() == sent_weights.keys()
    assert all((local_weights[k] == sent_weights[k]).all() for k in local_weights)
    local_card, sent_card = ModelCard.load(model_dir / "README.md"), ModelCard.load(sent / "README.md")
    assert sent_card.data.to_dict()["convhub"] == local_card.data.to_dict()["convhub"]  # the training metrics travel
    sent_accuracy = sent_card.data.eval_results[0].metric_value
    assert sent_accuracy == local_card.data.eval_results[0].metric_value
    assert sent_accuracy == round(artifacts.read_record(model_dir)["val_accuracy"], 4)
    assert sent_card.data.to_dict()["model-index"][0]["results"][0]["metrics"][0]["value"] == sent_accuracy
    assert convhub.load(sent).model_name == "net"  # what was uploaded loads back

    assert snapshot(model_dir) == before  # pushing never rewrites the local save


def test_push_to_main_creates_no_branch(hub, model_dir):
    publish.push(model_dir, "user/convhub-net", token="hf_x")
    assert "create_branch" not in [name for name, _ in hub.calls]
    assert hub.uploads[0]["revision"] in (None, "main")


def test_push_offline_is_refused_and_keeps_the_local_save(hub, model_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = snapshot(model_dir)
    with pytest.raises(PublishError, match="HF_HUB_OFFLINE"):
        publish.push(model_dir, "user/convhub-net", revision="v1", token="hf_x")
    assert hub.calls == []
    assert snapshot(model_dir) == before


def test_push_when_the_hub_cannot_be_reached(hub, model_dir, monkeypatch):
    monkeypatch.setattr(publish, "hub_reachable", lambda *a, **k: False)
    with pytest.raises(PublishError, match="cannot be reached.*training push"):
        publish.push(model_dir, "user/convhub-net", token="hf_x")
    assert hub.calls == []


@pytest.mark.parametrize("failing", ["create_repo", "create_branch", "upload_folder"])
def test_http_errors_become_publish_errors_and_keep_the_local_save(hub, model_dir, failing):
    hub.fail_on = failing
    before = snapshot(model_dir)
    with pytest.raises(PublishError) as error:
        publish.push(model_dir, "user/convhub-net", revision="v1", token="hf_x")
    message = str(error.value)
    assert "local save is untouched" in message and "user/convhub-net" in message
    assert f"simulated failure of {failing}" in message
    assert hub.uploads == []
    assert snapshot(model_dir) == before


def test_no_token_is_refused_before_any_request(hub, model_dir, no_token):
    with pytest.raises(PublishError, match="no Hugging Face token"):
        publish.push(model_dir, "user/convhub-net")
    assert hub.calls == []


def test_token_from_the_environment_is_used(hub, model_dir, no_token, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_from_env")
    assert publish.check_can_push() == "hf_from_env"
    assert publish.check_can_push("hf_given") == "hf_given"
    publish.push(model_dir, "user/convhub-net")
    assert len(hub.uploads) == 1


def test_read_record_of_an_untrained_save_is_none(tmp_path):
    convhub.create("net").save_pretrained(tmp_path / "untrained")
    assert artifacts.read_record(tmp_path / "untrained") is None
    assert artifacts.read_record(tmp_path / "nothing-here") is None


# --- through the CLI ------------------------------------------------------------------------------------------------


def test_cli_push_command(hub, model_dir):
    code, stdout, stderr = run_cli("push", "--from", model_dir, "--repo", "user/convhub-net", "--revision", "v1",
                                   "--token", "hf_x", "--private")
    assert code == 0, stderr
    assert "pushed" in stdout and "user/convhub-net" in stdout
    assert hub.calls[0] == ("create_repo", {"repo_id": "user/convhub-net", "private": True, "exist_ok": True})
    assert hub.uploads[0]["revision"] == "v1"


def test_cli_push_http_error_is_a_user_error(hub, model_dir):
    hub.fail_on = "upload_folder"
    code, _, stderr = run_cli("push", "--from", model_dir, "--repo", "user/convhub-net", "--token", "hf_x")
    assert_user_error(code, stderr, "local save is untouched")


def test_cli_push_of_a_folder_that_is_not_a_model(hub, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, stderr = run_cli("push", "--from", tmp_path / "empty", "--repo", "user/x", "--token", "hf_x")
    assert_user_error(code, stderr, "config.json")
    assert hub.uploads == []


def test_train_then_push(hub, folder, tmp_path):
    code, stdout, stderr = run_cli("train", "--model", "net", "--data", folder, "--epochs", 1, "--out", tmp_path / "o",
                                   "--push", "user/convhub-net", "--token", "hf_x", "--quiet")
    assert code == 0, stderr
    assert (tmp_path / "o" / "model.safetensors").is_file()  # saved locally first
    (upload,) = hub.uploads
    assert upload["repo_id"] == "user/convhub-net"
    sent_record = ModelCard.load(upload["folder"] / "README.md").data.to_dict()["convhub"]
    assert sent_record == artifacts.read_record(tmp_path / "o")


def test_zoo_pushes_each_net_and_reports_failures(hub, folder, tmp_path, monkeypatch):
    real_upload = HfApi.upload_folder

    def upload_all_but_net_depth(api, *, repo_id, **kwargs):
        if repo_id.endswith("net-depth"):
            hub.fail_on = "upload_folder"
        try:
            return real_upload(api, repo_id=repo_id, **kwargs)
        finally:
            hub.fail_on = None

    monkeypatch.setattr(HfApi, "upload_folder", upload_all_but_net_depth)
    code, stdout, stderr = run_cli("zoo", "--models", "net,net_depth", "--data", folder, "--epochs", 1,
                                   "--batch-size", 16, "--out", tmp_path / "zoo", "--push", "someone",
                                   "--token", "hf_x", "--quiet")
    assert code == 1  # one push failed; the other went through and every net is saved
    assert [u["repo_id"] for u in hub.uploads] == ["someone/convhub-net"]
    assert "someone/convhub-net-depth" in stderr and "local save is untouched" in stderr
    assert (tmp_path / "zoo" / "net_depth" / "model.safetensors").is_file()
    assert (tmp_path / "zoo" / "results.json").is_file()


# --- a Hub that accepts connections and never answers (issue #8) ----------------------------------------------------


@pytest.mark.usefixtures("hub_env")
def test_push_to_a_hub_that_never_answers_fails_within_seconds(silent_hub, saved, folder, tmp_path):
    import time

    start = time.monotonic()
    code, _, stderr = run_cli("push", "--from", saved, "--repo", "user/convhub-net", "--token", "hf_test")
    assert_user_error(code, stderr, "cannot be reached", silent_hub.url)
    code, stdout, stderr = run_cli("train", "--model", "net", "--data", folder, "--out", tmp_path / "o",
                                   "--push", "user/convhub-net", "--token", "hf_test", "--quiet")
    assert_user_error(code, stderr, "cannot be reached")
    assert "data:" not in stdout
    assert time.monotonic() - start < 2 * (convhub.hub.PROBE_TIMEOUT_S + 5)  # it hung past 150 s
