"""`python -m training push` / `publish` through the real huggingface_hub client, over real HTTP, to a Hub on
127.0.0.1 (tests/hub_server.py) that records every commit.

Nothing is simulated at the client: HfApi builds and sends whoami-v2, repos/create, branch, preupload and NDJSON
commit requests as it would to huggingface.co; the server answers as the Hub does and keeps the files, so the tests
assert on what actually arrived in each repo. Any connection to a host other than 127.0.0.1 fails the test.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import convhub
import pytest
import torch
from huggingface_hub import ModelCard, SpaceCard
from hub_server import HubServer
from test_training_helpers import (  # noqa: F401 - fixtures: one_torch_thread (autouse), no_token
    assert_user_error,
    make_image_folder,
    no_token,
    one_torch_thread,
    run_cli,
)
from training import artifacts, publish, space_bundle
from training.publish import PublishError

TOKEN = "hf_alice_write"
READ_TOKEN = "hf_alice_read"
ZOO = list(convhub.ZOO)
MODEL_REPO_FILES = {"README.md", "config.json", "model.safetensors"}


@pytest.fixture
def hub(hub_env, monkeypatch) -> HubServer:
    """The Hub on 127.0.0.1, HF_ENDPOINT at it; alice's token may also write to the org `acme`."""
    server = HubServer(tokens={TOKEN: "alice", READ_TOKEN: "alice"}, orgs={"alice": ["acme"]},
                       read_only={READ_TOKEN}).start()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    yield server
    server.stop()


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
    copy = tmp_path / "model"
    shutil.copytree(saved, copy)
    return copy


def snapshot(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def writes(hub: HubServer) -> list[tuple[str, str]]:
    return [(method, path) for method, path in hub.requests if method == "POST"]


# --- push: one folder -----------------------------------------------------------------------------------------------


def test_push_uploads_weights_config_and_a_card_naming_the_repo(hub, model_dir):
    before = snapshot(model_dir)
    url = publish.push(model_dir, "alice/convhub-net", revision="v1", token=TOKEN)

    [commit] = hub.commits
    assert url == f"{hub.url}/alice/convhub-net/commit/{hub.repos[('model', 'alice/convhub-net')].heads['v1']}"
    assert (commit.repo_id, commit.revision) == ("alice/convhub-net", "v1") and "net" in commit.summary
    files = hub.files("model", "alice/convhub-net", "v1")
    assert set(files) == MODEL_REPO_FILES
    assert files["model.safetensors"] == before["model.safetensors"] and files["config.json"] == before["config.json"]
    card = ModelCard(files["README.md"].decode())
    assert 'convhub.load("alice/convhub-net")' in card.text and "<namespace>" not in card.text
    assert card.data.to_dict()["convhub"] == artifacts.read_record(model_dir)  # the training metrics travel
    assert card.data.eval_results[0].metric_value == round(artifacts.read_record(model_dir)["val_accuracy"], 4)
    assert snapshot(model_dir) == before  # pushing never rewrites the local save
    order = [path for _, path in writes(hub)]
    # the card's YAML is checked twice: upload_folder checks it as it gathers the files, and, with Xet off (convhub
    # turns it off: hub.bound_hub_requests), create_commit checks it again
    assert order == ["/api/repos/create", "/api/models/alice/convhub-net/branch/v1", "/api/validate-yaml",
                     "/api/validate-yaml", "/api/models/alice/convhub-net/preupload/v1",
                     "/api/models/alice/convhub-net/commit/v1"]
    assert hub.validated == [("model", True)] * 2  # the card's metadata passed the Hub's check
    assert hub.requests[:2] == [("HEAD", "/api/models"), ("GET", "/api/whoami-v2")]  # probe, then the token


def test_the_mixins_push_to_hub_carries_the_metrics_and_names_the_repo(hub, model_dir):
    """model.push_to_hub, as huggingface_hub users publish, gave a card without metrics or model-index, whose
    snippets said <namespace>/convhub-net; `training push` gave the whole card."""
    model = convhub.load(model_dir)
    model.push_to_hub("acme/my-net", token=TOKEN)
    card = ModelCard(hub.files("model", "acme/my-net")["README.md"].decode())
    assert 'convhub.load("acme/my-net")' in card.text and "<namespace>" not in card.text
    assert card.data.to_dict()["convhub"] == artifacts.read_record(model_dir)
    assert card.data.eval_results[0].metric_value == round(artifacts.read_record(model_dir)["val_accuracy"], 4)
    with torch.no_grad():  # fine-tuned weights are no longer the ones the metrics describe
        next(model.parameters()).mul_(0.5)
    model.push_to_hub("acme/my-net", token=TOKEN)
    card = ModelCard(hub.files("model", "acme/my-net")["README.md"].decode())
    assert "convhub" not in card.data.to_dict() and not card.data.eval_results


def test_push_again_uploads_nothing_unchanged(hub, model_dir):
    publish.push(model_dir, "alice/convhub-net", token=TOKEN)
    publish.push(model_dir, "alice/convhub-net", token=TOKEN)
    assert len(hub.commits) == 1  # the client saw every file unchanged and made no empty commit


def test_a_refused_token_is_found_before_any_upload(hub, model_dir):
    with pytest.raises(PublishError, match="refused this token"):
        publish.push(model_dir, "alice/convhub-net", token="hf_wrong")
    assert writes(hub) == []


def test_no_token_is_refused_before_any_request(hub, model_dir, no_token):
    with pytest.raises(PublishError, match="no Hugging Face token"):
        publish.push(model_dir, "alice/convhub-net")
    assert hub.requests == []


def test_token_from_the_environment_is_used(hub, model_dir, no_token, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert publish.check_can_push() == TOKEN
    publish.push(model_dir, "alice/convhub-net")
    assert len(hub.commits) == 1


def test_push_offline_is_refused_and_keeps_the_local_save(hub, model_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = snapshot(model_dir)
    with pytest.raises(PublishError, match="HF_HUB_OFFLINE"):
        publish.push(model_dir, "alice/convhub-net", token=TOKEN)
    assert hub.requests == [] and snapshot(model_dir) == before


@pytest.mark.parametrize(("action", "status"), [("create", 403), ("branch", 500), ("commit", 500)])
def test_http_errors_become_publish_errors(hub, model_dir, action, status):
    hub.fail[(action, "alice/convhub-net")] = status
    with pytest.raises(PublishError, match=f"alice/convhub-net failed: .*{status}.*local save is untouched"):
        publish.push(model_dir, "alice/convhub-net", revision="v1", token=TOKEN)
    assert hub.commits == []


def test_pushing_to_someone_elses_namespace_is_refused_before_any_upload(hub, model_dir, folder, tmp_path):
    """The Hub's 403 came after the token was checked, as "403 Forbidden: None." and "run the same command again";
    whoami already says which namespaces the token's user may push to."""
    refusal = "this token is alice's, who may push to alice, acme, not to bob: pass another namespace"
    with pytest.raises(PublishError, match=refusal):
        publish.push(model_dir, "bob/convhub-net", token=TOKEN)
    code, _, stderr = run_cli("publish", "--namespace", "bob", "--token", TOKEN)
    assert_user_error(code, stderr, refusal)
    code, _, stderr = run_cli("train", "--model", "net", "--data", folder, "--epochs", 1, "--out", tmp_path / "net",
                              "--push", "bob/convhub-net", "--token", TOKEN, "--quiet")
    assert_user_error(code, stderr, refusal)
    assert writes(hub) == [] and not (tmp_path / "net").exists()  # refused before training
    publish.push(model_dir, "acme/convhub-net", token=TOKEN)  # an organization of the user's
    publish.check_can_push(TOKEN, ("Alice", "ACME"))  # names the Hub reads without their case


def test_names_a_hub_gives_go_into_messages_only_as_hub_names(hub_env, monkeypatch, model_dir):
    """A Hub's whoami names went into the namespace refusal as they came: escapes and line breaks retitled the
    terminal and forged output, and 20,000 organizations made a 289,079-character message."""
    hostile = HubServer(tokens={TOKEN: "alice", READ_TOKEN: "alice\x1b]0;PWNED\x07\nerror: fake"},
                        orgs={"alice": ["acme", *(f"org{i}\x1b[31m" for i in range(100)), *(f"team{i}" for i in range(20))]}
                        ).start()
    monkeypatch.setenv("HF_ENDPOINT", hostile.url)
    try:
        with pytest.raises(PublishError) as refused:
            publish.push(model_dir, "bob/convhub-net", token=TOKEN)
        message = str(refused.value)
        assert message.startswith("this token is alice's, who may push to alice, acme, team0, team1, ")
        assert "and 12 more, not to bob" in message and "\x1b" not in message and len(message) < 400
        with pytest.raises(PublishError, match=r"named this token's user 'alice\\x1b\]0;PWNED\\x07\\nerror: fake', "
                                               "which is no Hub user name") as refused:
            publish.push(model_dir, "alice/convhub-net", token=READ_TOKEN)
        assert str(refused.value).isprintable()
        assert hostile.commits == []
    finally:
        hostile.stop()


def test_a_repo_without_a_namespace_is_refused_before_any_request(hub, model_dir):
    """The Hub created `convhub-net` under the token's user, then the upload to `convhub-net` failed with a 404."""
    with pytest.raises(PublishError, match="--repo 'convhub-net': name the repo with its namespace, e.g. "
                                           "alice/convhub-net"):
        publish.push(model_dir, "convhub-net", token=TOKEN)
    code, _, stderr = run_cli("zoo", "--data", "nowhere", "--out", "nowhere", "--push", "alice/team", "--token", TOKEN)
    assert_user_error(code, stderr, "'alice/team/convhub-fc' is not a valid repo id")
    assert hub.requests == []


def test_the_hubs_reason_for_a_refusal_is_shown_and_a_plain_rerun_not_advised(hub, model_dir):
    """A 403 read "403 Forbidden: None." (the Hub's own words were dropped with the error's other lines), then "run
    the same command again to finish", which the Hub would refuse again."""
    hub.fail[("commit", "alice/convhub-net")] = 403
    with pytest.raises(PublishError, match="alice/convhub-net failed: 403 .*simulated 403 on commit"):
        publish.push(model_dir, "alice/convhub-net", token=TOKEN)
    code, _, stderr = publish_cli()
    assert_user_error(code, stderr, "pushing alice/convhub-net failed: 403", "simulated 403 on commit",
                      "Once the token may write there, run the same command again to finish")


def test_read_record_of_an_untrained_save_is_none(tmp_path):
    convhub.create("net").save_pretrained(tmp_path / "untrained")
    assert artifacts.read_record(tmp_path / "untrained") is None
    assert artifacts.read_record(tmp_path / "nothing-here") is None


def test_cli_push_command(hub, model_dir):
    code, stdout, stderr = run_cli("push", "--from", model_dir, "--repo", "acme/convhub-net", "--revision", "v1",
                                   "--token", TOKEN, "--private")
    assert code == 0, stderr
    assert "pushed" in stdout and "acme/convhub-net" in stdout
    assert hub.repos[("model", "acme/convhub-net")].private
    assert set(hub.files("model", "acme/convhub-net", "v1")) == MODEL_REPO_FILES


def test_private_for_a_repo_that_is_public_is_refused_before_anything_is_pushed_or_trained(hub, model_dir, folder,
                                                                                          tmp_path):
    """--private was ignored for a repo that already existed: create_repo(exist_ok=True) keeps its visibility, and
    the upload went into the public repo with "pushed"."""
    publish.push(model_dir, "alice/convhub-net", token=TOKEN)  # public
    commits = len(hub.commits)
    refusal = "--private, but alice/convhub-net already exists and is public, which the Hub keeps: nothing was pushed"
    code, _, stderr = run_cli("push", "--from", model_dir, "--repo", "alice/convhub-net", "--token", TOKEN,
                              "--private")
    assert_user_error(code, stderr, refusal)
    code, _, stderr = publish_cli("--only", "fc,net", "--private")  # fc's repo is new: not pushed either
    assert_user_error(code, stderr, refusal)
    for command in (["train", "--model", "net", "--push", "alice/convhub-net"],
                    ["zoo", "--models", "net", "--push", "alice"]):
        out = tmp_path / command[0]
        code, stdout, stderr = run_cli(*command, "--data", folder, "--epochs", 1, "--out", out, "--token", TOKEN,
                                       "--private", "--quiet")
        assert_user_error(code, stderr, refusal)
        assert not out.exists() and "data:" not in stdout  # refused before training
    assert len(hub.commits) == commits and not hub.repos[("model", "alice/convhub-net")].private
    assert ("model", "alice/convhub-fc") not in hub.repos
    hub.repos[("model", "alice/convhub-net")].private = True  # made private on the Hub: --private pushes again
    assert "alice/convhub-net" in publish.push(model_dir, "alice/convhub-net", private=True, token=TOKEN)


def test_a_push_of_files_the_repo_already_has_says_so_once(hub, model_dir):
    """huggingface_hub's warning came twice, from its own handler and again from the CLI's root one, and then the
    CLI said "pushed" with the commit that was already there: once, in ours."""
    argv = [sys.executable, "-m", "training", "push", "--from", str(model_dir), "--repo", "alice/convhub-net",
            "--token", TOKEN]
    outputs = []
    for run in range(2):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1])
        assert result.returncode == 0, result.stderr[-2000:]
        outputs.append(result.stdout.strip().splitlines()[-1])
    head = hub.repos[("model", "alice/convhub-net")].heads["main"]
    assert len(hub.commits) == 1 and outputs[0] == f"pushed {model_dir} to alice/convhub-net: {hub.url}/alice/" \
                                                   f"convhub-net/commit/{head}"
    assert outputs[1] == f"{outputs[0]} (already up to date: nothing was uploaded)"
    assert "No files have been modified" not in result.stderr and "WARNING" not in result.stderr, result.stderr


def test_a_repo_info_the_client_cannot_read_costs_a_push_only_its_up_to_date_note(hub, model_dir):
    """The branch's head is asked before the upload, to tell an upload that changed nothing: an answer that names no
    commit (a list, a sha of another form) made a push that had never needed it fail with a TypeError traceback."""
    for n, answer in enumerate(([1, 2], {"id": "alice/convhub-net", "sha": "../../x"})):
        hub.repo_info_answer = answer  # a first push: upload_folder itself asks for no repo info
        repo_id = f"alice/convhub-net-{n}"
        url = publish.push(model_dir, repo_id, token=TOKEN)
        assert url == f"{hub.url}/{repo_id}/commit/{hub.repos[('model', repo_id)].heads['main']}"


def test_cli_push_of_a_folder_that_is_not_a_model(hub, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, stderr = run_cli("push", "--from", tmp_path / "empty", "--repo", "alice/x", "--token", TOKEN)
    assert_user_error(code, stderr, "config.json")
    assert hub.requests == []  # refused before the Hub was contacted
    for source in (tmp_path / "missing", "alice/convhub-net"):  # a repo id is no folder to push from either
        code, _, stderr = run_cli("push", "--from", source, "--repo", "alice/x", "--token", TOKEN)
        assert_user_error(code, stderr, f"--from '{source}' is not a folder: pass a model folder written by train "
                                        "or zoo")
    assert hub.requests == []


def test_push_names_the_dataset_a_run_did_not_record(hub, model_dir, tmp_path):
    """A run on a folder (or from before --dataset-id) records no Hub dataset: push names the one its images came
    from, in the pushed card only."""
    before = snapshot(model_dir)
    assert "dataset_id" not in artifacts.read_record(model_dir)
    code, _, stderr = run_cli("push", "--from", model_dir, "--repo", "alice/convhub-net", "--token", TOKEN,
                              "--dataset-id", "uoft-cs/cifar10")
    assert code == 0, stderr
    card = ModelCard(hub.files("model", "alice/convhub-net")["README.md"].decode())
    assert card.data.datasets == ["uoft-cs/cifar10"] and card.data.eval_results[0].dataset_type == "uoft-cs/cifar10"
    assert card.data.to_dict()["convhub"] == {**artifacts.read_record(model_dir), "dataset_id": "uoft-cs/cifar10"}
    assert snapshot(model_dir) == before  # the local save keeps what the run recorded

    hub.requests.clear()
    untrained = tmp_path / "untrained"
    convhub.create("net").save_pretrained(untrained)  # weights no run trained: no data to name
    code, _, stderr = run_cli("push", "--from", untrained, "--repo", "alice/x", "--token", TOKEN,
                              "--dataset-id", "uoft-cs/cifar10")
    assert_user_error(code, stderr, "holds untrained weights: --dataset-id names the data a run trained on")
    assert hub.requests == []  # refused before the Hub was contacted
    with pytest.raises(publish.PublishError, match="'my birds' is not a Hub dataset id"):
        publish.push(model_dir, "alice/x", token=TOKEN, dataset_id="my birds")
    assert hub.requests == []


def test_train_then_push(hub, folder, tmp_path):
    code, _, stderr = run_cli("train", "--model", "net", "--data", folder, "--epochs", 1, "--out", tmp_path / "o",
                              "--push", "alice/convhub-net", "--token", TOKEN, "--quiet")
    assert code == 0, stderr
    assert (tmp_path / "o" / "model.safetensors").is_file()  # saved locally first
    card = ModelCard(hub.files("model", "alice/convhub-net")["README.md"].decode())
    assert card.data.to_dict()["convhub"] == artifacts.read_record(tmp_path / "o")


def test_train_with_a_refused_token_fails_before_training(hub, folder, tmp_path):
    code, stdout, stderr = run_cli("train", "--model", "net", "--data", folder, "--out", tmp_path / "o",
                                   "--push", "alice/convhub-net", "--token", "hf_wrong", "--quiet")
    assert_user_error(code, stderr, "refused this token")
    assert "data:" not in stdout and not (tmp_path / "o").exists()


def test_zoo_pushes_each_net_and_reports_failures(hub, folder, tmp_path):
    hub.fail[("commit", "alice/convhub-net-depth")] = 500
    code, _, stderr = run_cli("zoo", "--models", "net,net_depth", "--data", folder, "--epochs", 1,
                              "--batch-size", 16, "--out", tmp_path / "zoo", "--push", "alice",
                              "--token", TOKEN, "--quiet")
    assert code == 1  # one push failed; the other went through and every net is saved
    assert [c.repo_id for c in hub.commits] == ["alice/convhub-net"]
    assert "alice/convhub-net-depth" in stderr and "local save is untouched" in stderr
    assert (tmp_path / "zoo" / "net_depth" / "model.safetensors").is_file()


def test_a_zoo_finished_with_push_says_how_to_push_the_nets_it_did_not_train(hub, folder, tmp_path):
    """A zoo stopped halfway pushes nothing (it pushes once every net is trained); run again for the nets it lacks,
    it pushed those alone, and the ones saved before never reached the Hub."""
    import shlex

    zoo, fast = tmp_path / "my zoo", ["--data", folder, "--epochs", 1, "--batch-size", 16, "--quiet"]
    code, _, stderr = run_cli("zoo", "--models", "net", "--out", zoo, *fast)  # the part of the zoo that was saved
    assert code == 0, stderr
    code, stdout, stderr = run_cli("zoo", "--models", "net_depth", "--out", zoo, *fast, "--push", "alice",
                                   "--token", TOKEN)
    assert code == 0, stderr
    assert [c.repo_id for c in hub.commits] == ["alice/convhub-net-depth"]
    hint = next(line for line in stdout.splitlines() if line.startswith("net was trained before this run"))
    command = shlex.split(hint.split("`")[1])
    assert command[:4] == ["python", "-m", "training", "push"]
    code, _, stderr = run_cli(*command[3:], "--token", TOKEN)
    assert code == 0, stderr
    assert [c.repo_id for c in hub.commits] == ["alice/convhub-net-depth", "alice/convhub-net"]


@pytest.mark.usefixtures("hub_env")
def test_push_to_a_hub_that_never_answers_fails_within_seconds(silent_hub, saved, folder, tmp_path):
    start = time.monotonic()
    code, _, stderr = run_cli("push", "--from", saved, "--repo", "alice/convhub-net", "--token", TOKEN)
    # what to do depends on the command (push said "save locally and run `python -m training push` later")
    assert_user_error(code, stderr, "cannot be reached", silent_hub.url, "run the same command again once it can")
    code, stdout, stderr = run_cli("train", "--model", "net", "--data", folder, "--out", tmp_path / "o",
                                   "--push", "alice/convhub-net", "--token", TOKEN, "--quiet")
    assert_user_error(code, stderr, "cannot be reached", "train without --push now, and push the saved folders with "
                      "`python -m training push` later")
    assert "data:" not in stdout
    assert time.monotonic() - start < 2 * (convhub.hub.PROBE_TIMEOUT_S + 5)  # it hung past 150 s


# --- publish: the nine nets and the Space -------------------------------------------------------------------------


def publish_cli(*args):
    return run_cli("publish", "--namespace", "alice", "--token", TOKEN, *args)


def test_publish_pushes_every_trained_net_and_the_space(hub):
    code, stdout, stderr = publish_cli()
    assert code == 0, stderr
    repos = [convhub.pretrained_repo(name, "alice") for name in ZOO]
    assert [(c.repo_type, c.repo_id) for c in hub.commits] == [("model", r) for r in repos] + [("space", "alice/convhub")]
    for name, repo in zip(ZOO, repos):
        files = hub.files("model", repo)
        assert set(files) == MODEL_REPO_FILES
        bundled = space_bundle.SPACE_SOURCE / "models" / name
        assert files["model.safetensors"] == (bundled / "model.safetensors").read_bytes()
        card = ModelCard(files["README.md"].decode())
        assert f'convhub.load("{repo}")' in card.text and card.data.to_dict()["convhub"]["model_name"] == name
    space = hub.files("space", "alice/convhub")
    assert hub.repos[("space", "alice/convhub")].sdk == "gradio"
    assert {"app.py", "style.css", "requirements.txt", "README.md", "convhub_space.json", "convhub/__init__.py",
            "convhub/models.py"} <= set(space)
    assert all(f"models/{name}/model.safetensors" in space for name in ZOO)  # the offline fallback travels
    for report in artifacts.ZOO_REPORT_FILES:  # the Compare and Translation tabs read them
        assert space[f"models/{report}"] == (space_bundle.SPACE_SOURCE / "models" / report).read_bytes()
    card = SpaceCard(space["README.md"].decode())
    assert card.data.models == repos
    assert card.data.sdk_version == space_bundle.pinned_version(Path("requirements.txt"), "gradio")
    assert len(card.data.short_description) <= 60
    assert json.loads(space["convhub_space.json"]) == {"namespace": "alice", "revision": "main",
                                                       "models": dict(zip(ZOO, repos))}
    assert "gradio[mcp]==" in space["requirements.txt"].decode()
    assert hub.validated[-1] == ("space", True)  # the Space README passed the Hub's front-matter check
    assert f"{hub.url}/spaces/alice/convhub" in stdout
    assert hub.requests[:2] == [("HEAD", "/api/models"), ("GET", "/api/whoami-v2")]


def test_publish_options(hub):
    code, _, stderr = publish_cli("--only", "net,fc", "--revision", "v1", "--private", "--space", "acme/chapter8")
    assert code == 0, stderr
    assert [(c.repo_id, c.revision) for c in hub.commits] == [
        ("alice/convhub-fc", "v1"), ("alice/convhub-net", "v1"),  # the zoo's order
        ("acme/chapter8", "main")]  # Spaces run only main; the revision is the one the Space loads its nets at
    assert all(repo.private for repo in hub.repos.values())
    space = hub.files("space", "acme/chapter8")
    assert SpaceCard(space["README.md"].decode()).data.models == ["alice/convhub-fc", "alice/convhub-net"]
    assert json.loads(space["convhub_space.json"])["revision"] == "v1"
    assert {p.split("/")[1] for p in space if p.startswith("models/") and p.count("/") == 2} == {"fc", "net"}


def test_publish_space_needs_a_namespace(hub):
    code, _, stderr = publish_cli("--space", "chapter8")
    assert_user_error(code, stderr, "--space 'chapter8': name the Space with its namespace, e.g. alice/chapter8")
    assert hub.commits == [] and hub.requests == []


def test_publish_fails_part_way_says_what_was_pushed_and_a_rerun_finishes(hub):
    hub.fail[("commit", "alice/convhub-net-res")] = 500
    code, stdout, stderr = publish_cli()
    assert_user_error(code, stderr, "pushing alice/convhub-net-res failed",
                      "pushed (6): alice/convhub-fc, alice/convhub-net, alice/convhub-net-width",
                      "not pushed (4): alice/convhub-net-res, alice/convhub-net-res-deep, "
                      "alice/convhub-net-res-deep100, alice/convhub", "Run the same command again")
    assert len(hub.commits) == 6
    del hub.fail[("commit", "alice/convhub-net-res")]
    code, _, stderr = publish_cli()
    assert code == 0, stderr
    assert [c.repo_id for c in hub.commits[6:]] == [
        "alice/convhub-net-res", "alice/convhub-net-res-deep", "alice/convhub-net-res-deep100", "alice/convhub"]


def test_publish_with_a_refused_token_uploads_nothing(hub):
    code, _, stderr = run_cli("publish", "--namespace", "alice", "--token", "hf_wrong")
    assert_user_error(code, stderr, "refused this token")
    assert writes(hub) == []


def test_publish_checks_its_input_before_contacting_the_hub(hub, tmp_path):
    code, _, stderr = publish_cli("--only", "net,resnet50,net-res-deep")
    assert_user_error(code, stderr, "unknown 'resnet50' (the zoo: fc, net, net_width")
    assert "net-res-deep" not in stderr  # a repo's name for net_res_deep is known
    code, _, stderr = publish_cli("--only", ",".join(f"x{i}" for i in range(3000)))
    assert_user_error(code, stderr, "unknown 'x0', 'x1', 'x2', 'x3', 'x4' and 2995 more (the zoo: fc,")
    assert len(stderr) < 400, stderr
    for nothing in ("", " , "):  # an empty $NAMES in a script published the whole zoo
        code, _, stderr = publish_cli("--only", nothing)
        assert_user_error(code, stderr, "--only names no net")
    (tmp_path / "trained" / "net").mkdir(parents=True)
    (tmp_path / "trained" / "net" / "config.json").write_text('{"architecture": "Net", "n_blocks": NaN}')
    code, _, stderr = publish_cli("--from", tmp_path / "trained")
    assert_user_error(code, stderr, "not valid JSON")
    code, _, stderr = publish_cli("--from", tmp_path / "nowhere")
    assert_user_error(code, stderr, "no folder")
    assert hub.requests == []


@pytest.mark.parametrize("revision", ["../main", "v1 final", "fix:1", "a..b", ".hidden", "x.lock", "HEAD", "",
                                      "feature/", "a//b"])
def test_a_revision_git_would_refuse_is_refused_before_any_request(hub, model_dir, tmp_path, revision):
    """The Hub takes git's branch names only: a bad one failed at create_branch, after repos had been created."""
    assert_user_error(*publish_cli("--revision", revision)[::2], "is not a branch name git accepts")
    code, _, stderr = run_cli("publish", "--namespace", "alice", "--revision", revision, "--dry-run", tmp_path / "dry")
    assert_user_error(code, stderr, "is not a branch name git accepts")
    assert not (tmp_path / "dry").exists()
    with pytest.raises(PublishError, match="is not a branch name git accepts"):
        publish.push(model_dir, "alice/convhub-net", revision=revision, token=TOKEN)
    assert hub.requests == []


@pytest.mark.parametrize("revision", ["v1", "feature/x", "release-1.0"])
def test_a_revision_git_accepts_is_planned(revision):
    assert publish.plan("alice", revision=revision).revision == revision


def test_dry_run_writes_exactly_what_publish_uploads_and_contacts_nothing(hub, tmp_path, monkeypatch):
    real_connect = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect", lambda *a: pytest.fail("the dry run opened a connection"))
    code, stdout, stderr = run_cli("publish", "--namespace", "alice", "--dry-run", tmp_path / "out")
    assert code == 0, stderr
    assert "nothing was sent" in stdout
    monkeypatch.setattr(socket.socket, "connect", real_connect)
    assert hub.requests == []

    code, _, stderr = publish_cli()
    assert code == 0, stderr
    for repo in json.loads((tmp_path / "out" / publish.MANIFEST).read_text())["models"].values():
        assert snapshot(tmp_path / "out" / "models" / repo) == hub.files("model", repo)
        # the bundled zoo trained on CIFAR-10's airplanes and birds, as its records say: its cards link the dataset
        assert ModelCard.load(tmp_path / "out" / "models" / repo / "README.md").data.datasets == ["uoft-cs/cifar10"]
    assert snapshot(tmp_path / "out" / "spaces" / "alice" / "convhub") == hub.files("space", "alice/convhub")

    code, _, stderr = run_cli("publish", "--namespace", "alice", "--dry-run", tmp_path / "out")
    assert_user_error(code, stderr, "earlier dry run", "--overwrite")
    code, _, stderr = run_cli("publish", "--namespace", "alice", "--dry-run", tmp_path / "out", "--overwrite")
    assert code == 0, stderr
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    code, _, stderr = run_cli("publish", "--namespace", "alice", "--dry-run", tmp_path / "mine", "--overwrite")
    assert_user_error(code, stderr, "not empty")
    code, _, stderr = run_cli("publish", "--namespace", "alice", "--dry-run", tmp_path / "mine" / "notes.txt")
    assert_user_error(code, stderr, "notes.txt is a file: choose a new or empty folder")  # was "not empty"
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_publish_names_the_dataset_in_every_card_and_the_spaces_copy(saved, tmp_path):
    zoo = tmp_path / "zoo"
    shutil.copytree(saved, zoo / "net")  # a zoo run on a folder: no dataset recorded
    code, _, stderr = run_cli("publish", "--namespace", "alice", "--from", zoo, "--dry-run", tmp_path / "plain")
    assert code == 0, stderr
    assert ModelCard.load(tmp_path / "plain" / "models" / "alice" / "convhub-net" / "README.md").data.datasets is None
    code, _, stderr = run_cli("publish", "--namespace", "alice", "--from", zoo, "--dry-run", tmp_path / "out",
                              "--dataset-id", "alice/birds")
    assert code == 0, stderr
    cards = [tmp_path / "out" / "models" / "alice" / "convhub-net" / "README.md"]
    cards += list((tmp_path / "out" / "spaces").rglob("net/README.md"))  # the Space's own copy of the net
    assert len(cards) == 2
    for card in cards:
        assert ModelCard.load(card).data.datasets == ["alice/birds"]
    assert "dataset_id" not in artifacts.read_record(zoo / "net")  # the trained folder is left as it was
    code, _, stderr = run_cli("publish", "--namespace", "alice", "--from", zoo, "--dry-run", tmp_path / "bad",
                              "--dataset-id", "no such id")
    assert code == 2 and "argument --dataset-id: 'no such id' is not a Hub dataset id" in stderr


def test_the_space_readme_is_checked_as_the_hub_would(tmp_path):
    out = tmp_path / "space"
    out.mkdir()
    (out / "app.py").write_text("")
    (out / "requirements.txt").write_text("gradio[mcp]==6.31.0\n")
    good = SpaceCard.load(space_bundle.SPACE_SOURCE / "README.md")
    good.data.sdk_version = "6.31.0"
    space_bundle.check_front_matter(good, out)
    for key, value, message in [("short_description", "x" * 61, "1 to 60 characters"),
                                ("sdk_version", "5.0.0", "differs from the gradio==6.31.0"),
                                ("colorFrom", "black", "colorFrom must be one of"),
                                ("app_file", "main.py", "app_file 'main.py'"),
                                ("models", ["not a repo"], "not a repo id")]:
        card = SpaceCard(str(good))
        setattr(card.data, key, value)
        with pytest.raises(space_bundle.SpaceBundleError, match=message):
            space_bundle.check_front_matter(card, out)


def test_the_space_of_this_checkout_has_a_valid_readme():
    card = SpaceCard.load(space_bundle.SPACE_SOURCE / "README.md")
    space_bundle.check_front_matter(card, space_bundle.SPACE_SOURCE)
    assert space_bundle.pinned_version(Path(__file__).parents[1] / "requirements.txt", "gradio") == card.data.sdk_version


# --- what was published works for users ----------------------------------------------------------------------------


def test_the_cards_plain_pytorch_snippet_runs_without_convhub(hub, olah_server, tmp_path, monkeypatch):
    """The snippet of a published card, as written, in a fresh process where `import convhub` fails: it downloads
    the weights from a Hub (olah, serving what was just published) and prints what convhub.predict says."""
    code, _, stderr = publish_cli("--only", "net-res-deep")  # as its repo names it; net_res_deep as the zoo does
    assert code == 0, stderr
    repo = "alice/convhub-net-res-deep"
    files = hub.files("model", repo)
    (tmp_path / "repo").mkdir()
    for name, content in files.items():
        (tmp_path / "repo" / name).write_bytes(content)
    olah_server.publish(tmp_path / "repo", repo)
    snippet = ModelCard(files["README.md"].decode()).text.split("```python\n")[2].split("```")[0]
    from PIL import Image

    bird = space_bundle.SPACE_SOURCE / "examples" / "cifar_bird_0001.jpg"
    Image.open(bird).resize((50, 40)).save(tmp_path / "bird.jpg")
    run = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['convhub'] = None\n" + snippet],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_ENDPOINT": olah_server.url,
             "HF_HUB_CACHE": str(tmp_path / "cache"), "HF_HUB_DISABLE_TELEMETRY": "1"})
    assert run.returncode == 0, run.stderr
    printed = eval(run.stdout.strip().splitlines()[-1])  # noqa: S307 - the dict the snippet printed
    expected = convhub.load(tmp_path / "repo").predict(tmp_path / "bird.jpg")
    assert printed.keys() == expected.keys()
    assert all(abs(printed[k] - expected[k]) < 1e-5 for k in expected)


def test_publish_with_a_read_only_token_uploads_nothing(hub):
    code, _, stderr = run_cli("publish", "--namespace", "alice", "--token", READ_TOKEN)
    assert_user_error(code, stderr, "this token of alice can only read", "create a write token")
    assert hub.commits == [] and not any(path.startswith("/api/repos") for _, path in hub.requests)


@pytest.fixture
def package_with_strays(tmp_path, monkeypatch) -> Path:
    """A copy of the convhub package with what a working checkout may hold beside it: a .env, a link to a key
    elsewhere, and a link to a folder of credentials."""
    package = tmp_path / "checkout" / "convhub"
    shutil.copytree(space_bundle.CONVHUB_SOURCE, package, ignore=shutil.ignore_patterns("__pycache__"))
    outside = tmp_path / "home"
    outside.mkdir()
    (outside / "id_rsa").write_text("PRIVATE KEY")
    (package / ".env").write_text("HF_TOKEN=hf_secret_in_env")
    (package / "notes.txt").symlink_to(outside / "id_rsa")
    (package / "linked").symlink_to(outside)
    monkeypatch.setattr(space_bundle, "CONVHUB_SOURCE", package)
    return package


def test_the_space_gets_the_packages_modules_and_nothing_beside_them(package_with_strays, tmp_path):
    """The package was copied whole, links followed: a .env and the key a link pointed to went public."""
    out = publish.dry_run(publish.plan("alice", only="net"), tmp_path / "out")
    space = out / "spaces" / "alice" / "convhub"
    shipped = sorted(p.relative_to(space / "convhub").as_posix() for p in (space / "convhub").rglob("*"))
    assert shipped == sorted(p.name for p in package_with_strays.glob("*.py")) and "hub.py" in shipped
    assert not [p for p in out.rglob("*") if p.is_file() and (b"PRIVATE KEY" in p.read_bytes()
                                                              or b"hf_secret_in_env" in p.read_bytes())]


def test_a_module_that_is_a_link_stops_the_space_being_built(package_with_strays, tmp_path):
    (package_with_strays / "secrets.py").symlink_to(tmp_path / "home" / "id_rsa")
    with pytest.raises(convhub.ConvHubError, match="secrets.py is not a regular file"):
        publish.dry_run(publish.plan("alice", only="net"), tmp_path / "out")
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()]


def test_the_cli_logs_no_request_urls_and_so_no_endpoint_password(hub, model_dir, monkeypatch, caplog):
    """httpx logs every request's whole URL at INFO, which the CLI shows: an HF_ENDPOINT's password with it."""
    monkeypatch.setenv("HF_ENDPOINT", hub.url.replace("http://", "http://alice:s3cretpw@"))
    monkeypatch.setattr(convhub.hub.constants, "ENDPOINT", hub.url.replace("http://", "http://alice:s3cretpw@"))
    with caplog.at_level("INFO"):
        code, stdout, stderr = run_cli("push", "--from", model_dir, "--repo", "alice/convhub-net", "--token", TOKEN)
    assert hub.requests  # it talked to the Hub, as basic auth (httpx sends a URL's user:password instead)
    assert "HF_ENDPOINT carries a user:password, which is sent instead of your token" in stderr
    assert "s3cretpw" not in caplog.text + stdout + stderr
