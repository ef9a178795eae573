"""A net's anatomy as the chapter describes it: its stages named as the book names them ("conv1 → tanh", "pool1",
"block 3"), their C x H x W shapes and parameters, their activations, and the input pixels each unit can see.

Read from the net's own computation graph (torch.fx), so the nine nets need no table of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from convhub.errors import shown
from torch import fx

INPUT_SIDE = 32
ACTIVATIONS = {torch.tanh: "tanh", torch.relu: "relu", F.relu: "relu", torch.nn.Tanh: "tanh", torch.nn.ReLU: "relu"}
POOLS = (F.max_pool2d, torch.max_pool2d)


@dataclass(frozen=True)
class Field:
    """Receptive field of a stage's units: `size` input pixels a side, `jump` input pixels between neighbouring
    units, `start` the input coordinate of unit 0's centre (the standard arithmetic for convs and pools)."""

    size: float = 1.0
    jump: float = 1.0
    start: float = 0.0

    def through(self, kernel: int, stride: int, padding: int) -> Field:
        return Field(self.size + (kernel - 1) * self.jump, self.jump * stride,
                     self.start + ((kernel - 1) / 2 - padding) * self.jump)

    def box(self, y: int, x: int, side: int = INPUT_SIDE) -> tuple[int, int, int, int]:
        """Inclusive (top, left, bottom, right) of the input pixels unit (y, x) can see, clipped to the image:
        near the border part of the field is zero padding."""
        half = (self.size - 1) / 2
        rows = [self.start + y * self.jump - half, self.start + y * self.jump + half]
        cols = [self.start + x * self.jump - half, self.start + x * self.jump + half]
        clip = lambda v: int(min(max(v, 0), side - 1))  # noqa: E731
        return clip(rows[0]), clip(cols[0]), clip(rows[1]), clip(cols[1])

    def mask(self, y: int, x: int, side: int = INPUT_SIDE) -> torch.Tensor:
        top, left, bottom, right = self.box(y, x, side)
        mask = torch.zeros(side, side, dtype=torch.bool)
        mask[top:bottom + 1, left:right + 1] = True
        return mask


@dataclass(frozen=True)
class Stage:
    name: str  # as the book names it: "conv1 → tanh", "pool1", "block 3", "fc1 → tanh"
    node: str  # the fx node whose output this is
    shape: tuple[int, ...]  # C x H x W (or features) for one image
    params: int  # parameters of the layers since the previous stage
    field: Field | None  # None after flatten: a fully connected unit sees every pixel

    @property
    def is_map(self) -> bool:
        return len(self.shape) == 3

    @property
    def shape_text(self) -> str:
        return "×".join(str(s) for s in self.shape)


def _activation(node: fx.Node, modules: dict) -> str | None:
    if node.op == "call_function":
        return ACTIVATIONS.get(node.target)
    if node.op == "call_module":
        return ACTIVATIONS.get(type(modules[node.target]))
    return None


def _block_of(target: str) -> int | None:
    parts = target.split(".")
    return int(parts[1]) + 1 if len(parts) > 2 and parts[0] == "resblocks" and parts[1].isdigit() else None


def _trace(model: torch.nn.Module) -> fx.GraphModule:
    return fx.symbolic_trace(model)


def _named_stages(graph_module: fx.GraphModule) -> list[tuple[str, fx.Node, list[str]]]:
    """(book name, node, modules since the previous stage) for every stage, in order."""
    modules = dict(graph_module.named_modules())
    stages, pending, owned = [], None, []
    counts = {"conv": 0, "pool": 0, "fc": 0}
    for node in graph_module.graph.nodes:
        if node.op == "call_module":
            module = modules[node.target]
            owned.append(node.target)
            block = _block_of(node.target)
            if isinstance(module, torch.nn.Conv2d):
                counts["conv"] += block is None
                pending = f"block {block}" if block else f"conv{counts['conv']}"
            elif isinstance(module, torch.nn.Linear):
                counts["fc"] += 1
                pending = f"fc{counts['fc']}"
            elif isinstance(module, torch.nn.BatchNorm2d) and pending and not block:
                pending += " → BN"
        activation = _activation(node, modules)
        if activation and pending:
            users = list(node.users)
            if pending.startswith("block") or (len(users) == 1 and users[0].target is torch.add) or \
                    (len(users) == 1 and getattr(users[0].target, "__name__", "") == "add"):
                pending = pending if pending.startswith("block") else f"{pending} → {activation} + skip"
                continue  # the sum after it is the stage
            stages.append((f"{pending} → {activation}", node, owned))
            pending, owned = None, []
        elif node.op == "call_function" and getattr(node.target, "__name__", "") == "add" and pending:
            stages.append((pending, node, owned))
            pending, owned = None, []
        elif node.op == "call_function" and node.target in POOLS:
            counts["pool"] += 1
            stages.append((f"pool{counts['pool']}", node, owned))
            pending, owned = None, []
        elif node.op == "output" and pending:  # the last linear layer: the logits
            stages.append((pending, node.args[0], owned))
    return stages


def _fields(graph_module: fx.GraphModule) -> dict[str, Field | None]:
    """The receptive field of every node's output, by dataflow: convs and pools grow it, a sum takes the widest
    of its inputs (they share a centre), everything else passes it on; after flatten it is the whole image."""
    modules = dict(graph_module.named_modules())
    fields: dict[str, Field | None] = {}
    for node in graph_module.graph.nodes:
        inputs = [fields[n.name] for n in node.all_input_nodes if n.name in fields]
        if node.op == "placeholder":
            fields[node.name] = Field()
            continue
        if any(f is None for f in inputs) or not inputs:
            fields[node.name] = None
            continue
        widest = max(inputs, key=lambda f: f.size)
        module = modules.get(node.target) if node.op == "call_module" else None
        if isinstance(module, torch.nn.Conv2d):
            fields[node.name] = widest.through(module.kernel_size[0], module.stride[0], module.padding[0])
        elif node.op == "call_function" and node.target in POOLS:
            kernel = node.kwargs.get("kernel_size", node.args[1] if len(node.args) > 1 else None)
            stride = node.kwargs.get("stride", node.args[2] if len(node.args) > 2 else None) or kernel
            padding = node.kwargs.get("padding", node.args[3] if len(node.args) > 3 else 0)
            fields[node.name] = widest.through(kernel, stride, padding)
        elif node.op == "call_function" and getattr(node.target, "__name__", "") == "flatten":
            fields[node.name] = None
        elif isinstance(module, torch.nn.Linear):
            fields[node.name] = None
        else:
            fields[node.name] = widest
    return fields


class _Recorder(fx.Interpreter):
    """Runs the graph and keeps the outputs of the nodes asked for."""

    def __init__(self, graph_module: fx.GraphModule, wanted: set[str]):
        super().__init__(graph_module)
        self.wanted, self.outputs = wanted, {}

    def run_node(self, node):
        result = super().run_node(node)
        if node.name in self.wanted:
            self.outputs[node.name] = result
        return result


@lru_cache(maxsize=32)
def _anatomy(model: torch.nn.Module) -> tuple[fx.GraphModule, tuple[Stage, ...]]:
    graph_module = _trace(model)
    named = _named_stages(graph_module)
    fields = _fields(graph_module)
    parameters = dict(model.named_modules())
    recorder = _Recorder(graph_module, {node.name for _, node, _ in named})
    with torch.inference_mode():
        recorder.run(torch.zeros(1, 3, INPUT_SIDE, INPUT_SIDE))
    stages = tuple(
        Stage(name, node.name, tuple(recorder.outputs[node.name].shape[1:]),
              sum(p.numel() for target in owned for p in parameters[target].parameters(recurse=False)),
              fields[node.name])
        for name, node, owned in named)
    return graph_module, stages


def stages(model: torch.nn.Module) -> list[Stage]:
    """Every stage of the net from input to logits (cached per model object)."""
    return list(_anatomy(model)[1])


def map_stages(model: torch.nn.Module) -> list[Stage]:
    """The stages that are feature maps (C x H x W), where receptive fields and activations can be shown."""
    return [s for s in stages(model) if s.is_map]


def stage(model: torch.nn.Module, name: str) -> Stage:
    found = [s for s in stages(model) if s.name == name]
    if not found:
        raise KeyError(f"{shown(name)} is not a stage of this net; its stages: {', '.join(s.name for s in stages(model))}")
    return found[0]


@torch.inference_mode()
def activations(model: torch.nn.Module, x: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    """The outputs of the named stages for the input batch x."""
    graph_module, all_stages = _anatomy(model)
    by_name = {s.name: s.node for s in all_stages}
    recorder = _Recorder(graph_module, {by_name[n] for n in names})
    recorder.run(x)
    return {n: recorder.outputs[by_name[n]] for n in names}
