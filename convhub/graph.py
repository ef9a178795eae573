"""Rewrites of a net's computation graph that make it cheaper to run, never different (up to float rounding).

The book's nets apply their activation to a conv's full-size output and then max-pool it. Max-pooling commutes with
any non-decreasing function (the largest of four tanh values is the tanh of the largest value), so pooling first
computes the same numbers with a quarter of the activations, forward and backward. On a CPU without bf16 (AVX2),
tanh and its gradient were 38% of `net`'s training step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import fx

MONOTONIC = (torch.tanh, torch.relu, F.relu)  # non-decreasing: max(f(a), f(b)) == f(max(a, b))
MAX_POOLS = (F.max_pool2d, torch.max_pool2d)


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


def for_inference(model: torch.nn.Module) -> torch.nn.Module:
    """Puts the net in eval mode and returns an inference-only copy: each batch norm folded into the conv before it
    (torch.fx's fuse: one op instead of two, 100 fewer in the 100-block net), max-pooling before the activation, and,
    for convnets, channels-last weights (oneDNN's faster layout on CPU). The same outputs up to float rounding, from a
    snapshot of the weights: make a new copy after training further. The model itself stays as the book builds it
    (the Space's explorers show its layers); a net fx cannot trace is returned as it is."""
    from torch.fx.experimental.optimization import fuse

    model.eval()
    try:
        fused = fuse(model, inplace=False)
    except Exception:  # noqa: BLE001 - as in pool_before_activation
        return model
    served = pool_before_activation(fused).eval()
    if any(isinstance(m, torch.nn.Conv2d) for m in served.modules()):
        served = served.to(memory_format=torch.channels_last)
    return served
