"""Model folders from strangers: every config.json value and every weight is checked before it is used.

Each case was a raw error, a silent wrong model, or gigabytes of memory before convhub checked it (issue #8).
"""

from __future__ import annotations

import json

import convhub
import pytest
import torch
from convhub.config import CONFIG_FORMAT, ConfigError
from safetensors.torch import save_file

pytestmark = pytest.mark.usefixtures("one_thread", "hub_env")


def saved(tmp_path, name: str = "net", **overrides):
    torch.manual_seed(0)
    folder = tmp_path / name
    convhub.create(name, **overrides).save_pretrained(folder)
    return folder


def write_config(folder, text: str) -> None:
    (folder / "config.json").write_text(text)


def edit(folder, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    write_config(folder, json.dumps({**config, **changes}))


# --- config.json values --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "key", "value", "message"), [
    ("net_res_deep", "n_blocks", 1_000_000_000, "'n_blocks' is 1000000000; it must be from 1 to 1000"),
    ("net_res_deep", "n_blocks", 0, "'n_blocks' is 0"),
    ("net_res_deep", "n_blocks", 10.5, "'n_blocks' must be an integer"),
    ("net_res_deep", "n_blocks", True, "'n_blocks' must be an integer"),
    ("net_width", "n_chans1", 1_000_000, "'n_chans1' is 1000000; it must be from 2 to 512"),
    ("net_width", "n_chans1", "32", "'n_chans1' must be an integer from 2 to 512, not '32'"),
    ("net_width", "n_chans1", None, "'n_chans1' must be an integer"),
    ("net_width", "n_chans1", [32], "'n_chans1' must be an integer"),
    ("fc", "hidden", [1_000_000], r"'hidden\[0\]' is 1000000"),
    ("fc", "hidden", [], "'hidden' must be a list of 1 to 8 integers"),
    ("fc", "hidden", "1024", "'hidden' must be a list"),
    ("fc", "hidden", [1024, -5], r"'hidden\[1\]' is -5"),
    ("net_dropout", "p", 1.5, "'p' is 1.5"),
    ("net_dropout", "p", 1, "'p' is 1; it must be from 0 to 1 .exclusive."),
    ("net_dropout", "p", "0.4", "'p' must be a number"),
    pytest.param("net_dropout", "p", 10**400, "'p' must be a number", id="p-400-digits"),  # isfinite overflowed
])
def test_bad_constructor_values_are_refused_by_key(tmp_path, name, key, value, message):
    folder = saved(tmp_path, name)
    edit(folder, **{key: value})
    with pytest.raises(ConfigError, match=message):
        convhub.load(folder)


def test_sizes_within_range_that_add_up_to_a_giant_are_refused(tmp_path):
    folder = saved(tmp_path, "fc")
    edit(folder, hidden=[8192] * 8)  # each size allowed; together 500M parameters
    with pytest.raises(ConfigError, match="parameters; convhub builds nets of at most"):
        convhub.load(folder)


@pytest.mark.parametrize(("text", "message"), [
    ('{"architecture": "Net", "x": NaN}', "not valid JSON: NaN"),
    ('{"architecture": "Net", "x": Infinity}', "not valid JSON: Infinity"),
    ('{"architecture": "Net", "x": -Infinity}', "not valid JSON: -Infinity"),
    ('{"architecture": "Net", "x": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply|at most"),
    ('{"architecture": "Net", "x": ' + "9" * 5000 + "}", "not valid JSON"),
    ('{"architecture": "Net", "pad": "' + "x" * 70_000 + '"}', "bytes; a convhub config.json is at most"),
])
def test_hostile_json_is_a_clear_error(tmp_path, text, message):
    folder = saved(tmp_path)
    write_config(folder, text)
    with pytest.raises(ConfigError, match=message):
        convhub.load(folder)


@pytest.mark.parametrize(("target", "message"), [
    ("/proc/self/mem", "cannot read"),  # says it has 0 bytes; reading it fails
    ("/proc/self/maps", "more than 65,536 bytes|not valid JSON"),  # says 0 bytes; read only up to the bound
])
def test_a_config_that_lies_about_its_size_or_cannot_be_read_is_a_clear_error(tmp_path, target, message):
    from convhub.config import parse_config

    folder = saved(tmp_path)
    (folder / "config.json").unlink()
    (folder / "config.json").symlink_to(target)
    with pytest.raises(ConfigError, match=message):
        parse_config(folder / "config.json")
    with pytest.raises(ConfigError, match=message):
        convhub.load(folder)


def test_deeply_nested_json_within_the_size_limit(tmp_path):
    folder = saved(tmp_path)
    write_config(folder, '{"architecture": "Net", "x": ' + "[" * 20_000 + "]" * 20_000 + "}")
    with pytest.raises(ConfigError, match="nested too deeply"):
        convhub.load(folder)


@pytest.mark.parametrize("architecture", [["Net"], {"Net": 1}, 1, True, "__class__", "ConvHubModel", "ResBlock"])
def test_architecture_must_be_a_known_name(tmp_path, architecture):
    folder = saved(tmp_path)
    edit(folder, architecture=architecture)
    with pytest.raises(ConfigError, match="unknown architecture"):
        convhub.load(folder)


@pytest.mark.parametrize("version", ["1", -1, 0, True, 1.0, None, [1]])
def test_format_version_must_be_a_positive_integer(tmp_path, version):
    folder = saved(tmp_path)
    edit(folder, format_version=version)
    with pytest.raises(ConfigError, match="'format_version' must be a positive integer") as info:
        convhub.load(folder)
    assert "upgrade" not in str(info.value)


def test_newer_format_asks_for_an_upgrade_and_a_hostile_version_string_is_not_echoed(tmp_path):
    folder = saved(tmp_path)
    edit(folder, format_version=CONFIG_FORMAT + 1, convhub_version="x" * 5000)
    with pytest.raises(ConfigError, match="saved by convhub [?], .*upgrade") as info:
        convhub.load(folder)
    assert len(str(info.value)) < 500


@pytest.mark.parametrize(("key", "value", "message"), [
    ("class_names", ["airplane"], "'class_names' must be 2 distinct names"),
    ("class_names", ["a", "a"], "'class_names' must be 2 distinct names"),
    ("class_names", ["a", 1], "'class_names' must be 2 distinct names"),
    ("class_names", ["a", "x" * 65], "'class_names' must be 2 distinct names"),
    ("class_names", "airplane,bird", "'class_names' must be 2 distinct names"),
    ("num_classes", 10, "'num_classes' is 10"),
    ("input_size", [3, 64, 64], r"'input_size' is \[3, 64, 64\]; these nets take \[3, 32, 32\]"),
    ("mean", [0.5, 0.5], "'mean' must be 3 numbers"),
    ("mean", [0.5, 0.5, "0.5"], r"'mean\[2\]' must be a number"),
    ("std", [0.2, 0.0, 0.2], r"'std\[1\]' is 0"),
    ("std", [0.2, -1, 0.2], r"'std\[1\]' is -1"),
    pytest.param("std", [0.2, 0.2, -10**400], r"'std\[2\]' must be a number", id="std-400-digits"),
    pytest.param("mean", [10**400, 0.5, 0.5], r"'mean\[0\]' must be a number", id="mean-400-digits"),
    ("interpolation", "lanczos", "'interpolation' must be one of bilinear, bicubic, nearest"),
    ("crop", ["center"], "'crop' must be one of center_square, none"),
])
def test_preprocessing_values_are_checked(tmp_path, key, value, message):
    folder = saved(tmp_path)
    edit(folder, **{key: value})
    with pytest.raises(ConfigError, match=message):
        convhub.load(folder)


def test_every_constructor_argument_has_a_check():
    """A new argument without a spec would reach the constructor unchecked."""
    import inspect

    for cls in {cls for cls, _ in convhub.ZOO.values()}:
        params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        assert sorted(params) == sorted(cls.config_spec), cls.__name__


# --- weights -------------------------------------------------------------------------------------------------------


def rewrite_weights(folder, change) -> None:
    state = convhub.load(folder).state_dict()
    save_file({k: change(k, v).contiguous() for k, v in state.items()}, folder / "model.safetensors")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused(tmp_path, bad):
    folder = saved(tmp_path)
    rewrite_weights(folder, lambda k, v: v.clone().fill_(bad) if k == "fc2.bias" else v)
    with pytest.raises(convhub.ConvHubError, match=r"NaN or infinite values \(fc2.bias\)"):
        convhub.load(folder)


def test_non_finite_batchnorm_statistics_are_refused(tmp_path):
    folder = saved(tmp_path, "net_batchnorm")
    rewrite_weights(folder, lambda k, v: torch.full_like(v, float("nan")) if k.endswith("running_var") else v)
    with pytest.raises(convhub.ConvHubError, match="NaN or infinite"):
        convhub.load(folder)


def test_a_negative_batchnorm_variance_is_refused(tmp_path):
    """Finite, and still NaN in every prediction: the square root of a negative variance."""
    folder = saved(tmp_path, "net_batchnorm")
    rewrite_weights(folder, lambda k, v: torch.full_like(v, -1.0) if k.endswith("running_var") else v)
    with pytest.raises(convhub.ConvHubError, match=r"negative batch-norm variance \(conv1_batchnorm.running_var"):
        convhub.load(folder)


def test_finite_weights_that_overflow_to_nan_are_refused(tmp_path):
    """Every value finite, every prediction NaN: a saturated hidden layer times 3e38 is infinite, then NaN."""
    folder = saved(tmp_path)
    rewrite_weights(folder, lambda k, v: v * 1e6 if k == "fc1.weight" else torch.full_like(v, 3e38)
                    if k == "fc2.weight" else v)
    with pytest.raises(convhub.ConvHubError, match="NaN or infinite outputs on a plain black or white image"):
        convhub.load(folder)


@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.int32, torch.bool])
def test_integer_weights_are_refused(tmp_path, dtype):
    folder = saved(tmp_path)
    rewrite_weights(folder, lambda k, v: v.to(dtype))
    with pytest.raises(convhub.ConvHubError, match="is stored as .*convhub loads floating-point values"):
        convhub.load(folder)


def test_a_safetensors_header_far_larger_than_the_nets_is_refused_unparsed(tmp_path):
    """safe_open parses the whole JSON header, up to 100 MB: 83 MB of empty tensors cost 1.3 GB and 8 s of a load."""
    folder = saved(tmp_path)
    state = convhub.load(folder).state_dict()
    save_file({**state, **{f"pad{i}": torch.zeros(0, dtype=torch.uint8) for i in range(20_000)}},
              str(folder / "model.safetensors"))
    with pytest.raises(convhub.ConvHubError, match=r"a safetensors header of [\d,]+ bytes, for a net of 8 tensors "
                                                   r"\(at most 5,824 bytes\)"):
        convhub.load(folder)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_precisions_load_as_the_models(tmp_path, dtype):
    folder = saved(tmp_path)
    reference = convhub.load(folder).state_dict()
    rewrite_weights(folder, lambda k, v: v.to(dtype))
    loaded = convhub.load(folder).state_dict()
    for key, value in loaded.items():
        assert value.dtype == torch.float32
        assert torch.allclose(value, reference[key], atol=1e-2, rtol=1e-2)


def test_extra_and_missing_tensors_are_named(tmp_path):
    folder = saved(tmp_path)
    state = convhub.load(folder).state_dict()
    state["backdoor.weight"] = torch.zeros(3)
    del state["fc2.bias"]
    save_file(state, folder / "model.safetensors")
    with pytest.raises(convhub.ConvHubError, match="missing fc2.bias; unexpected backdoor.weight"):
        convhub.load(folder)


def test_batchnorm_counter_must_stay_an_integer(tmp_path):
    folder = saved(tmp_path, "net_batchnorm")
    rewrite_weights(folder, lambda k, v: v.float() if k.endswith("num_batches_tracked") else v)
    with pytest.raises(convhub.ConvHubError, match="num_batches_tracked is stored as F32; convhub loads integer"):
        convhub.load(folder)


# --- names ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "hf-hub:", " ", "hf-hub: "])
def test_an_empty_name_never_loads_the_current_folder(tmp_path, monkeypatch, name):
    saved(tmp_path)
    convhub.create("net").save_pretrained(tmp_path)  # a model right in the current folder
    monkeypatch.chdir(tmp_path)
    with pytest.raises(convhub.ConvHubError, match="no model named"):
        convhub.load(name)
    with pytest.raises(convhub.ConvHubError, match="no model named"):
        convhub.Net.from_pretrained(name)


@pytest.mark.parametrize("field", ["val_accuracy: 1", "seconds: 1", "per_class_accuracy: {bird: 1"])
def test_a_card_number_too_large_for_a_float_is_a_config_error(tmp_path, field):
    """YAML integers have no bound: 401 digits raised OverflowError, which `training report` and `publish` passed on."""
    from convhub.card import training_record

    folder = saved(tmp_path)
    closing = "}" if "{" in field else ""
    (folder / "README.md").write_text(f"---\nconvhub:\n  {field}{'0' * 400}{closing}\n---\n# card\n")
    with pytest.raises(ConfigError, match="must be a number"):
        training_record(folder)
