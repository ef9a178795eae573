"""space/anatomy.py: the nets' stages as the book names them, and receptive fields, against hand-worked cases and
against the gradients of the real nets."""

from __future__ import annotations

import sys
from pathlib import Path

import convhub
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "space"))

import anatomy  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def net(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return convhub.create(name).eval()


@pytest.mark.parametrize(("name", "expected"), [
    ("net", [("conv1 → tanh", "16×32×32", 448), ("pool1", "16×16×16", 0), ("conv2 → tanh", "8×16×16", 1160),
             ("pool2", "8×8×8", 0), ("fc1 → tanh", "32", 16416), ("fc2", "2", 66)]),
    ("net_batchnorm", [("conv1 → BN → tanh", "32×32×32", 960), ("pool1", "32×16×16", 0),
                       ("conv2 → BN → tanh", "16×16×16", 4656), ("pool2", "16×8×8", 0), ("fc1 → tanh", "32", 32800),
                       ("fc2", "2", 66)]),
    ("net_res", [("conv1 → relu", "32×32×32", 896), ("pool1", "32×16×16", 0), ("conv2 → relu", "16×16×16", 4624),
                 ("pool2", "16×8×8", 0), ("conv3 → relu + skip", "16×8×8", 2320), ("pool3", "16×4×4", 0),
                 ("fc1 → relu", "32", 8224), ("fc2", "2", 66)]),
    ("fc", [("fc1 → tanh", "1024", 3146752), ("fc2 → tanh", "512", 524800), ("fc3 → tanh", "128", 65664),
            ("fc4", "2", 258)]),
])
def test_stages_are_named_as_the_book_names_them(name, expected):
    assert [(s.name, s.shape_text, s.params) for s in anatomy.stages(net(name))] == expected


@pytest.mark.parametrize("name", list(convhub.ZOO))
def test_stages_account_for_every_parameter(name):
    model = net(name)
    assert sum(s.params for s in anatomy.stages(model)) == model.num_params
    assert anatomy.stages(model)[-1].shape == (2,)


def test_residual_stacks_have_one_stage_per_block():
    names = [s.name for s in anatomy.map_stages(net("net_res_deep"))]
    assert names == ["conv1 → relu", "pool1", *[f"block {i}" for i in range(1, 11)], "pool2"]


# --- receptive fields: hand-worked -------------------------------------------------------------------------------


def field(name: str, stage: str) -> anatomy.Field:
    return anatomy.stage(net(name), stage).field


@pytest.mark.parametrize(("stage", "size", "box_of_unit_5_5"), [
    ("conv1 → tanh", 3, (4, 4, 6, 6)),  # a 3x3 kernel around pixel 5
    ("pool1", 4, (9, 9, 12, 12)),  # the max of conv1 units 10-11, which see pixels 9-11 and 10-12
    ("conv2 → tanh", 8, (7, 7, 14, 14)),  # pool1 units 4-6 = conv1 units 8-13 = pixels 7-14: 8x8, as the issue says
    ("pool2", 10, (17, 17, 26, 26)),  # conv2 units 10-11, which see pixels 17-24 and 19-26: 10x10
])
def test_receptive_fields_of_net_by_hand(stage, size, box_of_unit_5_5):
    f = field("net", stage)
    assert f.size == size
    top, left, bottom, right = f.box(5, 5)
    assert (bottom - top + 1, right - left + 1) == (size, size)
    assert (top, left, bottom, right) == box_of_unit_5_5


def test_fields_near_the_border_are_clipped_to_the_image():
    assert field("net", "conv2 → tanh").box(0, 0) == (0, 0, 4, 4)  # 3 of its 8 rows and columns are padding
    assert field("net", "conv2 → tanh").box(15, 15) == (27, 27, 31, 31)
    mask = field("net", "pool2").mask(2, 3)
    assert mask.shape == (32, 32) and mask.sum() == 100


def test_fields_grow_with_depth_and_pooling():
    sizes = [s.field.size for s in anatomy.map_stages(net("net_res"))]
    assert sizes == [3, 4, 8, 10, 18, 22]  # the skip's own field is smaller and inside the conv's
    deep = [s.field.size for s in anatomy.map_stages(net("net_res_deep100"))]
    assert deep[:3] == [3, 4, 8] and deep[-2:] == [404, 406]  # wider than the image: every unit sees all of it
    assert anatomy.stages(net("net"))[-1].field is None  # fully connected: the whole image


# --- receptive fields: against gradients ------------------------------------------------------------------------


def gradient_support(model: torch.nn.Module, stage: str, y: int, x: int, trials: int) -> torch.Tensor:
    """The input pixels whose change can move unit (y, x) of a stage (summed over its channels), over random
    inputs: union of the supports of d(unit)/d(input)."""
    support = torch.zeros(32, 32, dtype=torch.bool)
    graph_module, stages = anatomy._anatomy(model)
    node = next(s.node for s in stages if s.name == stage)
    generator = torch.Generator().manual_seed(1)
    for _ in range(trials):
        image = torch.randn(1, 3, 32, 32, generator=generator, requires_grad=True)
        recorder = anatomy._Recorder(graph_module, {node})
        recorder.run(image)
        recorder.outputs[node][0, :, y, x].sum().backward()
        support |= image.grad[0].abs().sum(0) > 0
    return support


@pytest.mark.parametrize(("name", "stage", "y", "x"), [
    ("net", "conv2 → tanh", 5, 9), ("net", "pool2", 2, 6), ("net", "conv2 → tanh", 0, 15),
    ("net_res", "conv3 → relu + skip", 3, 4), ("net_res", "pool3", 1, 2), ("net_batchnorm", "pool1", 7, 0),
])
def test_masks_match_the_gradients_of_the_unit(name, stage, y, x):
    """No pixel outside the mask moves the unit; with enough random inputs (max pooling routes each gradient
    to one pixel of four), every pixel inside it does."""
    model = net(name)
    mask = anatomy.stage(model, stage).field.mask(y, x)
    support = gradient_support(model, stage, y, x, trials=40)
    assert not (support & ~mask).any()
    assert torch.equal(support, mask)


def test_a_unit_after_flatten_sees_every_pixel():
    model = net("net")
    graph_module, stages = anatomy._anatomy(model)
    node = next(s.node for s in stages if s.name == "fc1 → tanh")
    image = torch.randn(1, 3, 32, 32, requires_grad=True)
    recorder = anatomy._Recorder(graph_module, {node})
    recorder.run(image)
    recorder.outputs[node][0].sum().backward()
    assert (image.grad[0].abs().sum(0) > 0).all()


# --- activations ---------------------------------------------------------------------------------------------------


def test_activations_are_the_nets_own_intermediate_outputs():
    model = net("net")
    x = torch.randn(2, 3, 32, 32)
    outputs = anatomy.activations(model, x, ["conv1 → tanh", "pool2"])
    with torch.no_grad():
        conv1 = torch.tanh(model.conv1(x))
        pool2 = torch.nn.functional.max_pool2d(torch.tanh(model.conv2(torch.nn.functional.max_pool2d(conv1, 2))), 2)
    assert torch.allclose(outputs["conv1 → tanh"], conv1) and torch.allclose(outputs["pool2"], pool2)
    with pytest.raises(KeyError, match="is not a stage of this net"):
        anatomy.stage(model, "conv9")
