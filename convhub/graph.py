"""Rewrites of a net's computation graph that make it cheaper to run, never different (up to float rounding).

The book's nets apply their activation to a conv's full-size output and then max-pool it. Max-pooling commutes with
any non-decreasing function (the largest of four tanh values is the tanh of the largest value), so pooling first
computes the same numbers with a quarter of the activations, forward and backward. On a CPU without bf16 (AVX2),
tanh and its gradient were 38% of `net`'s training step.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx

MONOTONIC = (torch.tanh, torch.relu, F.relu)  # non-decreasing: max(f(a), f(b)) == f(max(a, b))
MAX_POOLS = (F.max_pool2d, torch.max_pool2d)
IN_PLACE = {torch.relu: torch.relu_, F.relu: torch.relu_, torch.tanh: torch.tanh_}
# What makes a new tensor of its own (never a view of another, as flatten's or an eval-mode dropout's output can be):
# overwriting it changes nothing else.
FRESH_MODULES = (torch.nn.Conv2d, torch.nn.Linear, torch.nn.BatchNorm2d)
DROPOUTS = (torch.nn.Dropout, torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d)  # the identity in eval mode
FRESH_FUNCTIONS = (*MAX_POOLS, operator.add, F.conv2d, F.linear)


def pool_before_activation(model: torch.nn.Module) -> torch.nn.Module:
    """A GraphModule computing ``model``'s function with every max-pool moved before the monotonic activation that
    feeds it. It shares the model's parameters, buffers and submodules: training it trains the model, and
    ``model.train()``/``eval()`` apply to it. The model itself is left as the book builds it. Returns the model
    unchanged when there is nothing to move (or it cannot be traced)."""
    try:
        graph_module = fx.symbolic_trace(model)
    except Exception:  # noqa: BLE001 - a net fx cannot trace simply runs as it is
        return model
    graph = graph_module.graph
    moved = 0
    for pool in list(graph.nodes):
        if pool.op != "call_function" or pool.target not in MAX_POOLS or pool.kwargs.get("return_indices"):
            continue
        activation = pool.args[0]
        if not (isinstance(activation, fx.Node) and activation.op == "call_function"
                and activation.target in MONOTONIC and len(activation.users) == 1 and not activation.kwargs):
            continue
        with graph.inserting_before(pool):
            pooled = graph.call_function(pool.target, (activation.args[0], *pool.args[1:]), dict(pool.kwargs))
            activated = graph.call_function(activation.target, (pooled, *activation.args[1:]))
        pool.replace_all_uses_with(activated)
        graph.erase_node(pool)
        graph.erase_node(activation)
        moved += 1
    if not moved:
        return model
    graph.lint()
    graph_module.recompile()
    return graph_module.train(model.training)


def as_functions(graph_module: fx.GraphModule) -> fx.GraphModule:
    """Each conv and linear layer called as a function of weights held at the top, and eval-mode dropout (the
    identity) left out: in the 100-block net, a module call and a 3-deep attribute lookup per weight fewer for
    every block: 12.4 -> 11.3 ms on one thread of a 2-core AVX2-only AMD EPYC. Shares the layers' weights."""
    modules = dict(graph_module.named_modules())
    graph = graph_module.graph
    for node in list(graph.nodes):
        module = modules.get(node.target) if node.op == "call_module" else None
        if isinstance(module, DROPOUTS) and not module.training:
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
            continue
        if isinstance(module, torch.nn.Conv2d) and module.padding_mode == "zeros" and isinstance(module.padding, tuple):
            function, settings = F.conv2d, (module.stride, module.padding, module.dilation, module.groups)
        elif isinstance(module, torch.nn.Linear):
            function, settings = F.linear, ()
        else:
            continue
        weights = []
        for kind in ("weight", "bias"):
            tensor = getattr(module, kind)
            if tensor is None:
                weights.append(None)
                continue
            name = f"{node.target.replace('.', '_')}_{kind}"
            graph_module.register_parameter(name, tensor)
            with graph.inserting_before(node):
                weights.append(graph.get_attr(name))
        with graph.inserting_before(node):
            called = graph.call_function(function, (node.args[0], *weights, *settings))
        called.meta.update(node.meta)
        node.replace_all_uses_with(called)
        graph.erase_node(node)
    graph.lint()
    graph_module.delete_all_unused_submodules()
    graph_module.recompile()
    return graph_module


def _fresh_and_used_once(node, modules: dict) -> bool:
    """``node``'s value is a tensor of its own that nothing reads after ``node``'s one user."""
    if not isinstance(node, fx.Node) or len(node.users) != 1:
        return False
    if node.op == "call_module":
        return isinstance(modules.get(node.target), FRESH_MODULES)
    return node.meta.get("overwrites_fresh", False) or (node.op == "call_function" and node.target in FRESH_FUNCTIONS)


def in_place(graph_module: fx.GraphModule, example: torch.Tensor) -> fx.GraphModule:
    """Activations and residual additions written into a value nobody reads again, instead of a new tensor: in the
    100-block net, 200 allocations fewer per image (after as_functions, 11.3 -> 11.1 ms there). For inference
    only (autograd needs the values overwritten). ``example``, an input, gives the shapes: an addition that would
    broadcast its left operand to a larger shape keeps making a new tensor."""
    from torch.fx.passes.shape_prop import ShapeProp

    modules = dict(graph_module.named_modules())
    graph = graph_module.graph
    for node in list(graph.nodes):
        if (node.op == "call_function" and node.target in IN_PLACE and len(node.args) == 1 and not node.kwargs
                and _fresh_and_used_once(node.args[0], modules)):
            node.target = IN_PLACE[node.target]
            node.meta["overwrites_fresh"] = True  # its value is its input's: fresh in turn
    try:
        with torch.inference_mode():
            ShapeProp(graph_module).propagate(example)
    except Exception:  # noqa: BLE001 - the shapes unknown: every addition keeps making a new tensor
        pass
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target is not operator.add or node.kwargs:
            continue
        left, right = node.args
        if isinstance(right, fx.Node) and not _fresh_and_used_once(left, modules):
            left, right = right, left  # a + b == b + a, and b may be the one to overwrite
        shape = node.meta.get("tensor_meta")
        if (_fresh_and_used_once(left, modules) and isinstance(right, fx.Node) and shape is not None
                and left.meta.get("tensor_meta") is not None
                and left.meta["tensor_meta"].shape == shape.shape and left.meta["tensor_meta"].dtype == shape.dtype):
            with graph.inserting_before(node):
                added = graph.call_method("add_", (left, right))
            added.meta["overwrites_fresh"] = True
            node.replace_all_uses_with(added)
            graph.erase_node(node)
    graph.lint()
    graph_module.recompile()
    return graph_module


def for_inference(model: torch.nn.Module) -> torch.nn.Module:
    """Puts the net in eval mode and returns an inference-only copy: each batch norm folded into the conv before it
    (torch.fx's fuse: one op instead of two, 100 fewer in the 100-block net), max-pooling before the activation, and,
    for convnets, channels-last weights (oneDNN's faster layout on CPU); for a convhub net (its input shape known),
    layers called as functions and values overwritten in place (as_functions, in_place). The same outputs up to float
    rounding, from a snapshot of the weights: make a new copy after training further. The model itself stays as the
    book builds it (the Space's explorers show its layers); a net fx cannot trace is returned as it is."""
    from torch.fx.experimental.optimization import fuse

    model.eval()
    try:
        fused = fuse(model, inplace=False)
    except Exception:  # noqa: BLE001 - as in pool_before_activation
        return model
    served = pool_before_activation(fused).eval()
    if any(isinstance(m, torch.nn.Conv2d) for m in served.modules()):
        served = served.to(memory_format=torch.channels_last)
    data_config = getattr(model, "data_config", None)  # a convhub net: its input's shape
    if isinstance(served, fx.GraphModule) and data_config is not None:
        weight = next(iter(served.parameters()), torch.empty(0))
        example = torch.zeros(1, *data_config.input_size, dtype=weight.dtype, device=weight.device)
        served = in_place(as_functions(served), example)
    return served
