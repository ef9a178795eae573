"""Why a 100-block stack trains only with its skip connections: the gradient that reaches each block, measured on a
freshly built NetResDeep, with the skips and without them."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from convhub.models import NetResDeep, ResBlock

SEED = 0  # one draw of the starting weights, the same for both stacks and every visitor
# torch's random draws are global: two visitors' stacks built at once took turns drawing from one seed, and their
# weights were neither seed 0's nor each other's (63 of 64 builds in 8 threads)
_DRAWING = threading.Lock()


class PlainBlock(ResBlock):
    """A residual block with its skip connection taken away: conv -> BN -> ReLU, the input not added back."""

    def forward(self, x):
        return torch.relu(self.batch_norm(self.conv(x)))


@dataclass(frozen=True)
class Gradients:
    blocks: int
    with_skips: tuple[float, ...]  # per block, block 1 nearest the image
    without_skips: tuple[float, ...]


def stack(blocks: int, skips: bool) -> NetResDeep:
    """NetResDeep as the book initialises it (Kaiming convs, BN weight 0.5): the same weights with or without
    skips."""
    with _DRAWING, torch.random.fork_rng(devices=[]):  # the Space's other random draws stay as they were
        torch.manual_seed(SEED)
        net = NetResDeep(n_blocks=blocks)
    if not skips:
        for block in net.resblocks:
            block.__class__ = PlainBlock
    return net.train()  # batch norm on the batch's statistics, as in training


def block_gradients(net: NetResDeep, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, ...]:
    """The size (L2 norm) of the loss's gradient on each block's conv weights, for one batch."""
    weights = [block.conv.weight for block in net.resblocks]
    with torch.inference_mode(False), torch.enable_grad():  # whatever mode the caller is in
        loss = F.cross_entropy(net(images), labels)
        grads = torch.autograd.grad(loss, weights)
    return tuple(float(g.norm()) for g in grads)


def measure(blocks: int, images: torch.Tensor, labels: torch.Tensor) -> Gradients:
    """Both stacks of ``blocks`` blocks on one batch of normalised images."""
    if blocks < 1:
        raise ValueError(f"a stack has at least one block, not {blocks}")
    return Gradients(blocks, block_gradients(stack(blocks, skips=True), images, labels),
                     block_gradients(stack(blocks, skips=False), images, labels))
