"""The zoo: parameter counts, forward passes, save_pretrained / load round trips, configs and the model card."""

from __future__ import annotations

import dataclasses
import json
import pickle
import re
from pathlib import Path

import convhub
import pytest
import torch
from convhub.models import CONFIG_FORMAT
from huggingface_hub import ModelCard
from safetensors.torch import load_file

pytestmark = pytest.mark.usefixtures("one_thread", "hub_env")

# Deep Learning with PyTorch ch. 7-8 (the notebooks' printouts, and the specs for the nets it does not print);
# net_res_deep* have distinct blocks, unlike the book's notebook (see shared/reference/chapter8.md).
EXPECTED_PARAMS = {
    "fc": 3_737_474,
    "net": 18_090,
    "net_width": 38_386,
    "net_dropout": 38_386,
    "net_batchnorm": 38_482,
    "net_depth": 16_130,
    "net_res": 16_130,
    "net_res_deep": 159_330,
    "net_res_deep100": 994_530,
}
ZOO_NAMES = list(EXPECTED_PARAMS)
STOCHASTIC = ["net_dropout", "net_batchnorm", "net_res_deep"]  # outputs depend on train/eval mode
MODEL_FILES = {"config.json", "model.safetensors", "README.md"}


def seeded(name: str, seed: int = 0, **overrides) -> convhub.ConvHubModel:
    torch.manual_seed(seed)
    return convhub.create(name, **overrides)


def batch(n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Each zoo net saved once (same seed as `seeded`): {name: folder}."""
    root = tmp_path_factory.mktemp("zoo")
    folders = {}
    for name in ZOO_NAMES:
        folders[name] = root / name
        seeded(name).save_pretrained(folders[name])
    return folders


# --- the zoo ---------------------------------------------------------------------------------------------------


def test_zoo_names_are_the_chapters_nets():
    assert list(convhub.ZOO) == list(convhub.zoo.NETS) == ZOO_NAMES
    assert {name: type(convhub.create(name)).__name__ for name in ZOO_NAMES} == {
        name: arch for name, (arch, _) in convhub.zoo.NETS.items()}


def test_saved_nets_are_the_zoo_folders_with_a_config(tmp_path):
    """The one rule the Space's CONVHUB_MODELS_DIR check and bundle, translation and publish read a folder by."""
    for name in ("net_res", "net", "net_width", "my_net"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
    (tmp_path / "fc").mkdir()  # no config.json
    (tmp_path / "net_depth").mkdir()
    (tmp_path / "net_depth" / "config.json").mkdir()  # a folder, not a file
    (tmp_path / "net_dropout").write_text("a file")
    assert convhub.zoo.saved_nets(tmp_path) == {name: tmp_path / name for name in ("net", "net_width", "net_res")}
    assert list(convhub.zoo.saved_nets(str(tmp_path))) == ["net", "net_width", "net_res"]  # the chapter's order
    assert convhub.zoo.saved_nets(tmp_path / "missing") == {}
    assert convhub.zoo.saved_nets(tmp_path, ["net_res", "fc", "my_net"]) == {"net_res": tmp_path / "net_res"}
    with pytest.raises(convhub.ConvHubError, match="cannot read '.*aaaa.*: File name too long"):
        convhub.zoo.saved_nets(tmp_path / ("a" * 300))  # an OSError traceback from is_file


def test_the_torch_free_layers_import_no_torch():
    """The Space lists the nets and finds their folders before torch is imported (~1.4 s of its start-up)."""
    import subprocess
    import sys

    code = ("import sys, convhub, convhub.card, convhub.hub, convhub.zoo; assert 'torch' not in sys.modules; "
            "print(convhub.pretrained_repo('net_res')); from convhub import Net; assert 'torch' in sys.modules; "
            "print(sorted(set(convhub.__all__) - set(dir(convhub))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["convhub/convhub-net-res", "[]"]
    with pytest.raises(AttributeError, match="no attribute 'Nett'"):
        convhub.Nett  # noqa: B018


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_parameter_count(name):
    model = convhub.create(name)
    assert model.num_params == EXPECTED_PARAMS[name]
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == EXPECTED_PARAMS[name]


def test_resblock_parameter_count():
    assert sum(p.numel() for p in convhub.ResBlock(32).parameters()) == 9_280


@pytest.mark.parametrize(("values", "message"), [
    ({"interpolation": "bicubik"}, "'interpolation' must be one of bilinear, bicubic, nearest, not 'bicubik'"),
    ({"mean": (5, 5, 5)}, r"'mean\[0\]' is 5; it must be from 0 to 1"),
    ({"class_names": ("plane",)}, "'class_names' must be 2 distinct names"),
])
def test_a_data_config_built_by_hand_is_checked_as_a_config_jsons_is(values, message):
    """DataConfig(interpolation="bicubik") failed later, inside torch's resize; mean=(5, 5, 5) was taken."""
    with pytest.raises(convhub.ConvHubError, match=rf"^DataConfig\(\.\.\.\): {message}"):
        convhub.DataConfig(**values)
    assert convhub.DataConfig(interpolation="bicubic", mean=(0.5, 0.5, 0.5)).interpolation == "bicubic"


def test_list_models_filters_names_as_timms_does():
    assert [info.name for info in convhub.list_models("net_res*")] == ["net_res", "net_res_deep", "net_res_deep100"]
    assert convhub.list_models("resnet*") == [] and len(convhub.list_models("*")) == len(ZOO_NAMES)
    # as create reads a name, and as a Hub repo writes it: create("net-res-deep") worked, list_models("net-res*") was []
    for pattern in ("net-res*", "convhub-net-res*", "NET_RES*"):
        assert convhub.list_models(pattern) == ["net_res", "net_res_deep", "net_res_deep100"], pattern
    assert convhub.list_models("net_res_deep[0-9]*") == ["net_res_deep100"]  # a range keeps its dash
    assert convhub.list_models("net_[!a-c]*") == ["net_width", "net_dropout", "net_depth", "net_res", "net_res_deep",
                                                  "net_res_deep100"]
    assert convhub.list_models(None) == convhub.list_models()
    assert convhub.create("net").num_classes == 2


def test_list_models_gives_names_as_timms_does():
    """timm's list_models returns names: `create(info)` was an AttributeError and `"net" in list_models()` False."""
    infos = convhub.list_models()
    assert "net" in infos and infos == ZOO_NAMES and json.loads(json.dumps(infos)) == ZOO_NAMES
    assert [convhub.create(info).model_name for info in convhub.list_models("net_res*")] == \
        ["net_res", "net_res_deep", "net_res_deep100"]
    assert repr(infos[1]).startswith("ModelInfo(name='net', architecture='Net', params=18090, description=")
    assert pickle.loads(pickle.dumps(infos[1])).params == 18090  # as multiprocessing sends it
    with pytest.raises(TypeError, match=r"^name is a zoo net's name such as 'net' .* not int$"):
        convhub.create(3)
    for value in (None, 3, b"net"):  # load(None) was "no folder 'None'"
        for loader in (convhub.load, convhub.Net.from_pretrained):
            with pytest.raises(TypeError, match=r"^name_or_path is a folder or a Hub repo id, not \w+$"):
                loader(value)


def test_list_models_agrees_with_create():
    infos = convhub.list_models()
    assert [info.name for info in infos] == ZOO_NAMES
    for info in infos:
        model = convhub.create(info.name)
        assert isinstance(info, convhub.ModelInfo)
        assert info.architecture == type(model).__name__
        assert info.params == model.num_params == EXPECTED_PARAMS[info.name]
        assert info.description and "\n" not in info.description


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_model_name_is_the_zoo_name(name):
    assert convhub.create(name).model_name == name


def test_create_with_overrides_builds_a_different_net():
    model = convhub.create("net_width", n_chans1=16)
    assert model.conv1.out_channels == 16 and model.conv2.out_channels == 8
    assert model.num_params != EXPECTED_PARAMS["net_width"]
    assert model.model_name != "net_width"
    assert convhub.create("net_res_deep", n_blocks=3).num_params == EXPECTED_PARAMS["net_res_deep"] - 7 * 9_280


@pytest.mark.parametrize(("overrides", "message"), [
    ({"n_chans1": 10**6}, "'n_chans1' is 1000000; it must be from 2 to 512"),  # it allocated 10**12 weights
    ({"n_chans1": 149, "n_blocks": 100}, "of 20,.* parameters; convhub builds nets of at most"),  # load refused it
    ({"n_chans1": "32"}, "'n_chans1' must be an integer"),
    ({"depth": 3}, r"net_res_deep \(NetResDeep\) takes no depth; its arguments are: n_chans1, n_blocks"),
])
def test_create_checks_its_overrides_as_load_checks_a_config(overrides, message):
    """A net create() builds is one load() takes back: the same checks, before anything is allocated."""
    with pytest.raises(convhub.ConvHubError, match=message):
        convhub.create("net_res_deep", **overrides)


def test_create_takes_numpy_numbers_and_saves_them_as_plain_ones(tmp_path):
    """A numpy integer was built into the net and saved as the default (n_chans1: 32) in config.json."""
    import numpy as np

    model = convhub.create("net_width", n_chans1=np.int64(16))
    assert model.conv1.out_channels == 16 and type(model._hub_mixin_config["n_chans1"]) is int
    model.save_pretrained(tmp_path / "w")
    assert json.loads((tmp_path / "w" / "config.json").read_text())["n_chans1"] == 16
    assert convhub.load(tmp_path / "w").conv1.out_channels == 16
    dropout = convhub.create("net_dropout", p=np.float32(0.25))
    assert dropout.conv1_dropout.p == 0.25 and type(dropout._hub_mixin_config["p"]) is float


def test_model_name_does_not_depend_on_tuple_or_list():
    """config.json turns tuples into lists: the name must not change when a net is loaded back."""
    assert convhub.FullyConnected(hidden=[1024, 512, 128]).model_name == "fc"
    assert convhub.create("fc", hidden=(64, 32)).model_name == convhub.create("fc", hidden=[64, 32]).model_name
    assert convhub.create("fc", hidden=(64, 32)).model_name != convhub.create("fc", hidden=(64, 16)).model_name
    # each argument named with its value apart: n_chans1 of 8 read "n_chans18"
    assert convhub.create("fc", hidden=(64, 32)).model_name == "fullyconnected_hidden-64x32"
    assert convhub.create("net_width", n_chans1=8).model_name == "netwidth_n_chans1-8"
    assert convhub.create("net_res_deep", n_blocks=3).model_name == "netresdeep_n_blocks-3_n_chans1-32"


@pytest.mark.parametrize("name, changes", [("net_width", {"n_chans1": 8}), ("fc", {"hidden": (64, 32)}),
                                           ("net_dropout", {"p": 0.25})])
def test_a_custom_nets_training_record_reads_back_with_its_name(tmp_path, name, changes):
    from convhub.card import training_record

    model = convhub.create(name, **changes)
    record = {**TRAINING, "model_name": model.model_name, "params": model.num_params}
    model.save_pretrained(tmp_path / "m", model_card_kwargs={"training": record})
    assert training_record(tmp_path / "m")["model_name"] == model.model_name
    assert convhub.load(tmp_path / "m").loaded_record[0]["model_name"] == model.model_name


def test_create_unknown_name_lists_the_zoo():
    with pytest.raises(convhub.ConvHubError, match="unknown model 'resnet50'") as info:
        convhub.create("resnet50")
    assert all(name in str(info.value) for name in ZOO_NAMES)


def test_create_takes_a_nets_name_as_its_hub_repo_writes_it_and_suggests_a_near_miss():
    """The repos are convhub-net-res-deep...: create("net-res-deep") was "unknown model" with the list only."""
    for name in ("net-res-deep", "convhub-net-res-deep", " NET_RES_DEEP "):
        assert type(convhub.create(name)) is convhub.NetResDeep and convhub.create(name).model_name == "net_res_deep"
    with pytest.raises(convhub.ConvHubError, match=r"^unknown model 'net_batchnrom' \(did you mean net_batchnorm\?\)"):
        convhub.create("net_batchnrom")


def test_resdeep_blocks_are_distinct_modules():
    model = convhub.create("net_res_deep")
    blocks = list(model.resblocks)
    assert len(blocks) == 10 and len({id(b) for b in blocks}) == 10
    assert len({b.conv.weight.data_ptr() for b in blocks}) == 10


# --- forward ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ZOO_NAMES)
@pytest.mark.parametrize("n", [1, 5])
def test_forward_shape(name, n):
    model = seeded(name).eval()
    with torch.no_grad():
        out = model(batch(n))
    assert out.shape == (n, 2) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_channels_last_and_non_contiguous_inputs_give_the_same_output(name):
    model = seeded(name).eval()
    x = batch(4)
    channels_last = x.to(memory_format=torch.channels_last)
    transposed = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # NHWC storage viewed as NCHW
    big = torch.zeros(8, 3, 40, 40)
    big[::2, :, 4:36, 4:36] = x
    sliced = big[::2, :, 4:36, 4:36]
    swapped = x.transpose(2, 3).contiguous().transpose(2, 3)  # H and W strides swapped
    assert channels_last.is_contiguous(memory_format=torch.channels_last) and not channels_last.is_contiguous()
    assert not transposed.is_contiguous() and not sliced.is_contiguous() and not swapped.is_contiguous()
    with torch.no_grad():
        expected = model(x)
        for variant in (channels_last, transposed, sliced, swapped):
            assert torch.equal(variant, x)
            torch.testing.assert_close(model(variant), expected, rtol=1e-5, atol=1e-5)


def test_channels_last_model_gives_the_same_output():
    model = seeded("net_batchnorm").eval()
    x = batch(3)
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        torch.testing.assert_close(model(x.to(memory_format=torch.channels_last)), expected, rtol=1e-5, atol=1e-5)


# --- save_pretrained / load ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_saved_folder_holds_config_safetensors_and_card_only(name, saved):
    folder = saved[name]
    assert {p.name for p in folder.iterdir()} == MODEL_FILES
    assert not [p for p in folder.rglob("*") if p.suffix in {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}]
    # every parameter and buffer (BatchNorm statistics included) is in the safetensors file, with its value
    tensors = load_file(folder / "model.safetensors")
    state = seeded(name).state_dict()
    assert set(tensors) == set(state)
    for key, value in state.items():
        assert torch.equal(tensors[key], value), key


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_round_trip_gives_identical_outputs_in_eval_mode(name, saved):
    original = seeded(name).eval()
    loaded = convhub.load(saved[name])
    assert type(loaded) is type(original)
    assert not loaded.training and not any(m.training for m in loaded.modules())
    assert loaded.model_name == name
    x = batch(4)
    with torch.no_grad():
        assert torch.equal(loaded(x), original(x))
    for (key, a), (key_b, b) in zip(original.state_dict().items(), loaded.state_dict().items()):
        assert key == key_b and torch.equal(a, b), key


@pytest.mark.parametrize("name", STOCHASTIC)
def test_round_trip_gives_identical_outputs_in_train_mode(name, saved):
    original = seeded(name).train()
    loaded = convhub.load(saved[name]).train()
    x = batch(8)
    outputs = []
    for model in (original, loaded):
        torch.manual_seed(123)
        with torch.no_grad():
            outputs.append(model(x))
    assert torch.equal(outputs[0], outputs[1])
    with torch.no_grad():  # and train mode really differs from eval mode for these nets
        assert not torch.allclose(loaded(x), loaded.eval()(x))


@pytest.mark.parametrize("name", ["net_batchnorm", "net_res_deep"])
def test_batchnorm_running_statistics_survive_the_round_trip(name, tmp_path):
    model = seeded(name).train()
    with torch.no_grad():
        for step in range(3):
            model(batch(16, seed=10 + step) * 2 + 0.5)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms
    for norm in norms:
        assert norm.num_batches_tracked.item() == 3
        assert not torch.equal(norm.running_mean, torch.zeros_like(norm.running_mean))
        assert not torch.equal(norm.running_var, torch.ones_like(norm.running_var))
    model.save_pretrained(tmp_path)
    loaded = convhub.load(tmp_path)
    loaded_norms = [m for m in loaded.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm, loaded_norm in zip(norms, loaded_norms, strict=True):
        for buffer in ("running_mean", "running_var", "num_batches_tracked"):
            assert torch.equal(getattr(loaded_norm, buffer), getattr(norm, buffer)), buffer
        assert loaded_norm.num_batches_tracked.dtype == torch.int64
    x = batch(4)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))


def test_saved_weights_are_as_readable_as_the_files_beside_them(tmp_path):
    """safetensors wrote model.safetensors owner-only (0600) beside a 0644 config.json and card: a folder shared
    with a web server or another user served everything but the weights."""
    convhub.create("net").save_pretrained(tmp_path / "net")
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "net").iterdir()}
    assert modes["model.safetensors"] == modes["config.json"] == modes["README.md"], modes


def test_mixin_from_pretrained(tmp_path):
    torch.manual_seed(0)
    model = convhub.NetResDeep(n_chans1=8, n_blocks=3).eval()
    model.save_pretrained(tmp_path)
    loaded = convhub.NetResDeep.from_pretrained(tmp_path)
    assert type(loaded) is convhub.NetResDeep and len(loaded.resblocks) == 3 and loaded.n_chans1 == 8
    assert not loaded.training
    x = batch(2)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert type(convhub.NetResDeep.from_pretrained(str(tmp_path))) is convhub.NetResDeep


@pytest.mark.parametrize("keyword", [{"revison": "v1"}, {"n_chans1": 64}, {"device": "cpu"}, {"num_classes": 10}])
def test_a_keyword_from_pretrained_does_not_take_is_a_type_error(saved, keyword):
    """Each was ignored without a word: a typo of revision loaded main's weights, n_chans1=64 gave the saved 16."""
    with pytest.raises(TypeError, match=f"unexpected keyword argument '{next(iter(keyword))}'"):
        convhub.load(saved["net"], **keyword)
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        convhub.Net.from_pretrained(saved["net"], **keyword)


@pytest.mark.parametrize(("device", "message"), [
    ("gpu", r"^map_location must name a device \('cpu', 'cuda', 'cuda:1', 'mps'\), not 'gpu'$"),
    (3.5, "map_location must name a device .+, not 3.5$"),
    ("meta", "map_location='meta' would load no weights"),
])
def test_a_device_that_cannot_be_used_is_named_as_such(saved, device, message):
    """A device's failure read "weights in .../model.safetensors do not fit Net{}: ...", blaming the weights."""
    with pytest.raises(convhub.ConvHubError, match=message):
        convhub.load(saved["net"], map_location=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_a_gpu_this_machine_lacks_is_named_not_the_weights(saved):
    with pytest.raises(convhub.ConvHubError, match="^cannot put Net on cuda: ") as raised:
        convhub.load(saved["net"], map_location="cuda")
    assert "do not fit" not in str(raised.value)


def test_a_loaded_trained_net_saved_again_keeps_its_metrics_while_its_weights_are_the_same(tmp_path):
    """save_pretrained of a loaded trained net wrote a card without its metrics; after training on, a card keeping
    them would describe other weights."""
    from convhub.card import training_record

    trained = Path(__file__).resolve().parents[1] / "space" / "models" / "net"
    model = convhub.load(trained)
    model.save_pretrained(tmp_path / "again")
    assert training_record(tmp_path / "again") == training_record(trained) is not None
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    model.save_pretrained(tmp_path / "tuned")
    assert training_record(tmp_path / "tuned") is None
    # nor once what config.json says of the net changes: its class names, its normalization
    relabelled = convhub.load(trained)
    relabelled.data_config = dataclasses.replace(relabelled.data_config, class_names=("bird", "airplane"))
    relabelled.save_pretrained(tmp_path / "relabelled")
    assert training_record(tmp_path / "relabelled") is None
    convhub.load(trained).save_pretrained(tmp_path / "renormalized", config={"mean": [0.5, 0.5, 0.5]})
    assert training_record(tmp_path / "renormalized") is None
    # a card that is a link elsewhere is not read into the cards saved from the net (the net still loads)
    linked = tmp_path / "linked"
    linked.mkdir()
    for name in ("config.json", "model.safetensors"):
        (linked / name).write_bytes((trained / name).read_bytes())
    (linked / "README.md").symlink_to(trained / "README.md")
    convhub.load(linked).save_pretrained(tmp_path / "from-linked")
    assert training_record(tmp_path / "from-linked") is None


@pytest.mark.parametrize("planted", [False, True])
def test_a_card_linked_as_the_hf_cache_links_it_is_read_and_a_planted_blobs_link_is_not(tmp_path, planted):
    """In the HF cache a snapshot's README.md links to ../../blobs/<hash>; a folder whose `blobs` was a link to /
    let its card read any file into the cards saved from the net."""
    from convhub.card import training_record

    trained = Path(__file__).resolve().parents[1] / "space" / "models" / "net"
    repo = tmp_path / "models--alice--convhub-net"
    snapshot = repo / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (snapshot / name).write_bytes((trained / name).read_bytes())
    blobs = tmp_path / "elsewhere" if planted else repo / "blobs"
    blobs.mkdir()
    (blobs / ("b" * 64)).write_bytes((trained / "README.md").read_bytes())
    if planted:
        (repo / "blobs").symlink_to(blobs)
    (snapshot / "README.md").symlink_to(Path("..", "..", "blobs", "b" * 64))
    convhub.load(snapshot).save_pretrained(tmp_path / "saved")
    assert (training_record(tmp_path / "saved") is None) == planted


def test_base_class_from_pretrained_picks_the_architecture(saved):
    loaded = convhub.ConvHubModel.from_pretrained(saved["net_depth"])
    assert type(loaded) is convhub.NetDepth
    with torch.no_grad():
        assert torch.equal(loaded(batch(2)), seeded("net_depth").eval()(batch(2)))


def test_mixin_from_pretrained_refuses_another_architecture(saved):
    with pytest.raises(convhub.ConvHubError, match="holds a Net, not a NetResDeep") as info:
        convhub.NetResDeep.from_pretrained(saved["net"])
    assert "convhub.load(" in str(info.value)
    with pytest.raises(convhub.ConvHubError, match="holds a NetDepth, not a NetRes"):  # a subclass is not enough
        convhub.NetRes.from_pretrained(saved["net_depth"])


# --- config.json -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_config_json_records_what_users_need(name, saved):
    config = json.loads((saved[name] / "config.json").read_text())
    model = convhub.create(name)
    assert config["architecture"] == type(model).__name__
    assert config["model_name"] == name
    assert config["class_names"] == ["airplane", "bird"] == list(convhub.CIFAR2_CLASSES)
    assert config["num_classes"] == 2
    assert config["input_size"] == [3, 32, 32]
    assert config["mean"] == pytest.approx(convhub.CIFAR_MEAN) and len(config["mean"]) == 3
    assert config["std"] == pytest.approx(convhub.CIFAR_STD) and len(config["std"]) == 3
    assert config["format_version"] == CONFIG_FORMAT
    assert config["convhub_version"] == convhub.__version__
    _, kwargs = convhub.ZOO[name]
    for key, value in kwargs.items():
        assert config[key] == value


def test_extra_config_keys_are_added_not_swapped_in(tmp_path):
    convhub.create("net_width", n_chans1=16).save_pretrained(tmp_path, config={"dataset": "my-planes", "n_chans1": 16})
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["dataset"] == "my-planes"
    assert config["architecture"] == "NetWidth" and config["class_names"] == ["airplane", "bird"]
    assert convhub.load(tmp_path).conv1.out_channels == 16


@pytest.mark.parametrize(("name", "overrides", "check"), [
    ("net_width", {"n_chans1": 16}, lambda m: m.conv1.out_channels == 16 and m.fc1.in_features == 8 * 8 * 8),
    ("net_dropout", {"n_chans1": 8, "p": 0.25}, lambda m: m.conv1_dropout.p == 0.25 and m.conv1.out_channels == 8),
    ("net_batchnorm", {"n_chans1": 8}, lambda m: m.conv2_batchnorm.num_features == 4),
    ("net_depth", {"n_chans1": 8}, lambda m: m.conv3.out_channels == 4),
    ("net_res", {"n_chans1": 12}, lambda m: m.conv3.in_channels == 6),
    ("net_res_deep", {"n_chans1": 8, "n_blocks": 3}, lambda m: len(m.resblocks) == 3 and m.fc1.in_features == 512),
    ("fc", {"hidden": [64, 32]}, lambda m: [layer.out_features for layer in m.layers[::2]] == [64, 32, 2]),
])
def test_constructor_arguments_round_trip(name, overrides, check, tmp_path):
    model = seeded(name, **overrides).eval()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    for key, value in overrides.items():
        assert config[key] == value
    assert config["model_name"] == model.model_name != name
    loaded = convhub.load(tmp_path)
    assert type(loaded) is type(model) and check(loaded)
    assert {k: (list(v) if isinstance(v, tuple) else v) for k, v in loaded._hub_mixin_config.items()} == \
        {**convhub.ZOO[name][1], **overrides}
    assert loaded.model_name == model.model_name
    x = batch(2)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


# --- model card ------------------------------------------------------------------------------------------------

TRAINING = {
    "val_accuracy": 0.87654, "train_accuracy": 0.93, "epochs": 7, "seconds": 41.5, "device": "cpu",
    "dataset": "synthetic CIFAR-2", "validation": "10% stratified split", "recipe": "book",
    "recipe_description": "plain SGD, lr 1e-2", "seed": 1234, "convhub_version": convhub.__version__,
    "torch_version": torch.__version__,  # a TorchVersion (str subclass), as a caller would naturally pass it
    "per_class_accuracy": {"airplane": 0.9, "bird": 0.85},
}


@pytest.mark.parametrize("name", ["net", "net_res_deep100"])
def test_model_card_of_an_untrained_net(name, saved):
    card = ModelCard.load(saved[name] / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "convhub"
    assert data["pipeline_tag"] == "image-classification"
    assert data["license"] == "mit"
    assert "convhub" in data["tags"]
    assert "model-index" not in data and "convhub" not in data and card.data.eval_results is None
    assert f"{EXPECTED_PARAMS[name]:,}" in card.text
    assert "untrained" in card.text


def test_model_card_with_training_record(tmp_path):
    folder = tmp_path / "trained"
    model = seeded("net_batchnorm")
    model.save_pretrained(folder, model_card_kwargs={"training": TRAINING})
    assert {p.name for p in folder.iterdir()} == MODEL_FILES
    card = ModelCard.load(folder / "README.md")
    (result,) = card.data.eval_results
    assert result.metric_type == "accuracy"
    assert result.metric_value == pytest.approx(0.8765)
    assert result.task_type == "image-classification"
    assert card.data.model_name == "convhub-net-batchnorm"
    record = card.data.to_dict()["convhub"]
    assert record == {**TRAINING, "val_accuracy": 0.8765, "torch_version": str(torch.__version__)}  # rounded
    assert card.data.to_dict()["library_name"] == "convhub"
    assert "38,482" in card.text
    assert "0.8765" in card.text and "0.9300" in card.text  # validation and train accuracy
    assert "bird | 0.8500" in card.text
    assert "untrained" not in card.text
    # and the weights still load
    assert type(convhub.load(folder)) is convhub.NetBatchNorm


def test_a_records_text_and_class_names_show_as_text_in_the_card(tmp_path):
    """The card's Markdown took a record's text and a config's class names as they were: a stranger's <img>, remote
    ![image](url), [link](url), `|` (a broken table) or line break (a heading of their own) went into every card
    regenerated from them (`publish` does). The front matter keeps the values as they are."""
    from convhub.card import clean_record, training_record
    from convhub.config import ConfigError

    hostile = "x <img src=x onerror=alert(1)> ![t](http://127.0.0.1:9/t.png) [c](javascript:x) | a | b # H"
    record = {**TRAINING, "dataset": hostile, "recipe_description": hostile, "device": "</table><b>cpu",
              "per_class_accuracy": {"air|plane [a](b)": 0.9, "bird": 0.85}}
    model = seeded("net")
    model.data_config = dataclasses.replace(model.data_config, class_names=("<img src=x>|x", "![t](u) `{{"))
    model.save_pretrained(tmp_path / "m", model_card_kwargs={"training": record})
    card = (tmp_path / "m" / "README.md").read_text()
    body = card.split("\n---\n", 1)[1]  # its Markdown, less the code blocks (repr in Python code is safe there)
    body = re.sub(r"```.*?```", "", body, flags=re.S).replace("[ConvHub](https://github.com/convhub/convhub)", "")
    def raw(markup: str) -> bool:  # the markup, not shown as text (Markdown's backslash escape)
        return re.search(r"(?<!\\)" + re.escape(markup), body) is not None

    assert not any(raw(markup) for markup in ("<img", "<b>", "</table>", "](", "|x", "[c]"))
    assert "http://" not in body and not re.search(r"^#+ H", body, re.M)
    def cells(line: str) -> int:  # a table row's unescaped pipes: 3 for two cells
        return len(re.findall(r"(?<!\\)\|", line))

    assert [cells(line) for line in body.splitlines() if line.startswith("| classes")] == [3]
    assert [cells(line) for line in body.splitlines() if line.startswith("| val accuracy, air")] == [3]
    assert training_record(tmp_path / "m")["dataset"] == hostile  # the YAML copy is the value itself
    with pytest.raises(ConfigError, match="'dataset' must be one line of text"):
        clean_record({**TRAINING, "dataset": "a\x85b"}, "card")  # YAML read U+0085 back as a line break


def test_model_card_names_the_repo_and_the_data_honestly(tmp_path):
    model = seeded("net_res_deep100")
    record = {**TRAINING, "validation": "seeded class-balanced 10% of it (seed 0)", "dataset_id": "uoft-cs/cifar10"}
    card = model.generate_model_card(training=record, repo_id="alice/convhub-net-res-deep100")
    assert "<namespace>" not in card.text
    assert 'convhub.load("alice/convhub-net-res-deep100")' in card.text
    assert 'hf_hub_download("alice/convhub-net-res-deep100", "model.safetensors")' in card.text
    assert 'pip install "convhub @ git+' in card.text and "pip install torch safetensors huggingface_hub" in card.text
    assert "one block shared by every position, 75,810 parameters" in card.text and "994,530" in card.text
    (result,) = card.data.eval_results
    assert result.dataset_name == "CIFAR-10 airplane + bird (CIFAR-2)" and result.dataset_type == "uoft-cs/cifar10"
    assert result.dataset_split == "train (held-out: seeded class-balanced 10% of it (seed 0))"
    assert card.data.datasets == ["uoft-cs/cifar10"]
    assert "cifar10 validation" not in card.content.lower()


@pytest.mark.parametrize("dataset, dataset_id, datasets, kind, name", [
    # a folder whose origin the run did not name: no dataset linked, named as transformers names local folders
    ("image folder birds", None, None, "imagefolder", "image folder birds: airplane + bird"),
    ("datasets folder ds", None, None, "local", "datasets folder ds: airplane + bird"),
    ("alice/cifar2 (datasets)", "alice/cifar2", ["alice/cifar2"], "alice/cifar2", "alice/cifar2: airplane + bird"),
])
def test_model_card_links_only_the_dataset_the_images_came_from(dataset, dataset_id, datasets, kind, name):
    record = {**TRAINING, "dataset": dataset, **({"dataset_id": dataset_id} if dataset_id else {})}
    card = seeded("net").generate_model_card(training=record)
    (result,) = card.data.eval_results
    assert card.data.datasets == datasets and "uoft-cs" not in card.content
    assert (result.dataset_type, result.dataset_name) == (kind, name)
    assert seeded("net").generate_model_card().data.datasets is None  # untrained weights came from no data


@pytest.mark.parametrize("dataset, linked", [
    ("CIFAR-10 python batches", "uoft-cs/cifar10"), ("alice/cifar2 (datasets)", "alice/cifar2"),
    ("bad id! (datasets)", None), ("image folder train", None), ("datasets folder ds", None)])
def test_a_record_from_before_dataset_id_links_what_its_dataset_text_proves(dataset, linked):
    """Re-pushing a run saved before records named their dataset keeps the link its card had, where it was right."""
    card = seeded("net").generate_model_card(training={**TRAINING, "dataset": dataset})
    assert card.data.datasets == ([linked] if linked else None)
    assert card.data.eval_results[0].dataset_type == (linked or ("imagefolder" if "image" in dataset else "local"))


@pytest.mark.parametrize("hostile", ["a b", "x\ny", "../../etc", "a--b/c", "-a/b", "x" * 200, 7, ["a/b"]])
def test_a_records_dataset_id_must_be_a_hub_id(hostile):
    from convhub.card import clean_record
    from convhub.config import ConfigError

    with pytest.raises(ConfigError, match="'dataset_id' must be a Hub dataset id such as uoft-cs/cifar10"):
        clean_record({**TRAINING, "dataset_id": hostile}, "card")
    assert clean_record({**TRAINING, "dataset_id": "uoft-cs/cifar10"}, "card")["dataset_id"] == "uoft-cs/cifar10"


def test_model_card_plain_pytorch_snippet_defines_the_net_without_convhub(tmp_path):
    """The snippet's classes rebuild the net with torch alone and take the saved weights as they are."""
    from safetensors.torch import load_file

    for name in ("fc", "net_res", "net_res_deep"):
        model = seeded(name)
        model.save_pretrained(tmp_path / name)
        code = convhub.card.plain_pytorch(model, "alice/x")
        assert "convhub" not in code and "ConvHubModel" not in code and "config_spec" not in code
        classes_part = code[:code.index("model = ")]
        namespace: dict = {}
        exec(compile(classes_part, "<card>", "exec"), namespace)  # noqa: S102 - our own generated code
        plain = eval(code[code.index("model = ") + 8:].splitlines()[0], namespace)  # noqa: S307
        plain.load_state_dict(load_file(tmp_path / name / "model.safetensors"))
        assert isinstance(plain, torch.nn.Module) and not isinstance(plain, convhub.ConvHubModel)
        x = batch(2)
        with torch.no_grad():
            assert torch.equal(plain.eval()(x), model.eval()(x))


def test_convhub_and_the_spaces_modules_need_no_torchvision():
    """torchvision is not a dependency: importing it cost the served Space more start-up time than torch itself."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['torchvision'] = None\n"
            "sys.path[:0] = ['space']\n"
            "import convhub, training.cli, training.data, inference, anatomy, figures, uploads\n"
            "m = convhub.create('net'); from PIL import Image; print(m.predict(Image.new('RGB', (50, 40))))")
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "airplane" in run.stdout


@pytest.mark.parametrize("name", list(convhub.ZOO))
def test_pooling_before_the_activation_computes_the_same_and_trains_the_model(name):
    from convhub.graph import MAX_POOLS, MONOTONIC, pool_before_activation

    torch.manual_seed(0)
    model = convhub.create(name).train()
    fast = pool_before_activation(model)
    x = torch.randn(6, 3, 32, 32)
    torch.manual_seed(1)  # the same dropout masks in both
    expected = model(x)
    expected.square().sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    torch.manual_seed(1)
    got = fast(x)
    got.square().sum().backward()
    torch.testing.assert_close(got, expected)
    for n, p in model.named_parameters():  # the rewrite's gradients land on the model's own parameters
        torch.testing.assert_close(p.grad, grads[n], msg=n)
    if name == "fc":
        assert fast is model  # nothing to move
    else:
        pools = [node for node in fast.graph.nodes if node.target in MAX_POOLS]
        assert pools and not any(isinstance(p.args[0], torch.fx.Node) and p.args[0].target in MONOTONIC
                                 for p in pools)  # no pool left after an activation
    fast.eval()  # the layers are the model's own: eval() on the rewrite puts its dropout and batch norm in eval mode
    assert not any(module.training for module in model.modules() if not list(module.children()))


@pytest.mark.parametrize("name", list(convhub.ZOO))
def test_the_inference_copy_computes_what_the_net_does_without_touching_it(name):
    from convhub.graph import for_inference
    from test_training_helpers import scramble_batch_norm_statistics

    torch.manual_seed(0)
    model = scramble_batch_norm_statistics(convhub.create(name).train())
    before = {key: value.clone() for key, value in model.state_dict().items()}
    served = for_inference(model)
    x = torch.randn(4, 3, 32, 32)
    with torch.inference_mode():
        answer = served(x)
        torch.testing.assert_close(answer, model.eval()(x), rtol=1e-4, atol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in served.modules())
    for key, value in model.state_dict().items():  # a copy: the model keeps its own layers and weights
        torch.testing.assert_close(value, before[key], rtol=0, atol=0, msg=key)
    assert not served.training and not model.training
    with torch.no_grad():  # a snapshot: changing the model afterwards does not reach it
        for parameter in model.parameters():
            parameter.add_(1)
        torch.testing.assert_close(served(x), answer, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["net_dropout", "net_res", "net_res_deep"])
def test_the_inference_copy_calls_its_layers_as_functions_and_overwrites_only_its_own_values(name):
    """The served copy runs convs and linears as functions, drops eval-mode dropout, and writes activations and
    residual sums into values nobody reads again; the caller's input is never one of them."""
    import operator

    from convhub.graph import for_inference

    torch.manual_seed(0)
    model = convhub.create(name).eval()
    served = for_inference(model)
    nodes = list(served.graph.nodes)
    assert not [node for node in nodes if node.op == "call_module"]  # no layer called as a module
    assert any(node.target is torch.relu_ or node.target is torch.tanh_ for node in nodes)
    if name.startswith("net_res"):
        assert any(node.target == "add_" for node in nodes) and not any(node.target is operator.add for node in nodes)
    x = torch.randn(3, 3, 32, 32)
    kept = x.clone()
    with torch.inference_mode():
        torch.testing.assert_close(served(x), model(x), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(x, kept, rtol=0, atol=0)


def test_in_place_leaves_shared_values_views_and_broadcasts_alone():
    """Overwriting is only for a value made by a layer, read once, and as large as the result: a view (flatten), a
    value read twice, the input, and a sum broadcast past its left operand each keep making a new tensor."""
    from convhub.graph import in_place

    class Tricky(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.narrow = torch.nn.Linear(64, 1)

        def forward(self, x):
            a = self.conv(x)  # read twice
            b = torch.relu(torch.flatten(a, 1))  # a view of a
            c = self.narrow(b) + b  # (N, 1) + (N, 64): the left operand is smaller than the sum
            return torch.relu(x).sum((1, 2, 3)) + c.sum(1) + a.mean((1, 2, 3))  # the input

    torch.manual_seed(0)
    model = Tricky().eval()
    x = torch.randn(2, 3, 4, 4)
    kept = x.clone()
    with torch.inference_mode():
        expected = model(x)
        rewritten = in_place(torch.fx.symbolic_trace(model), x[:1])
        torch.testing.assert_close(rewritten(x), expected, rtol=0, atol=0)
    torch.testing.assert_close(x, kept, rtol=0, atol=0)
    in_place_nodes = [node for node in rewritten.graph.nodes if node.target in (torch.relu_, "add_")]
    assert [node.target for node in in_place_nodes] == ["add_"]  # the last sum alone: its left operand is a new sum


def test_a_net_fx_cannot_trace_is_its_own_inference_copy():
    from convhub.graph import for_inference

    class Untraceable(torch.nn.Module):
        def forward(self, x):
            return x[:, :2, 0, 0] * len(x)  # len() of a traced tensor is unknown

    model = Untraceable().train()
    assert for_inference(model) is model and not model.training
