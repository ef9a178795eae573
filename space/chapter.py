"""The words of the Space: what chapter 8 argues, and what each net adds to the one before it."""

from __future__ import annotations

BOOK_URL = "https://www.manning.com/books/deep-learning-with-pytorch"
BOOK = f"[*Deep Learning with PyTorch*]({BOOK_URL}), chapter 8"

INTRO = (
    "Nine networks from {book}, trained on CIFAR-2: 10,000 airplane and bird photos of 32×32 pixels. The chapter "
    "replaces a fully connected net, which gives every pixel its own weights, with convolutions: small kernels that "
    "look at a neighbourhood (**locality**), the same kernel everywhere (**weight sharing**), so a bird is found "
    "wherever it sits "
    "(**translation invariance**); then it goes wider, regularized, deeper, and deeper still with **skip "
    "connections**. Drop in a picture or click an example; the other tabs open each idea up."
)

# What each net changes from the one before it, in the chapter's order.
WHAT_CHANGED = {
    "fc": "No convolutions: every pixel wired to every unit (ch. 7)",
    "net": "3×3 convolutions, shared across positions, + max pooling",
    "net_width": "Wider: 32 and 16 channels in its two convs instead of 16 and 8",
    "net_dropout": "+ Dropout2d: drops whole channels while training",
    "net_batchnorm": "+ BatchNorm after each conv, no dropout",
    "net_depth": "A third conv stage; ReLU instead of tanh",
    "net_res": "+ a skip connection around the third conv",
    "net_res_deep": "10 residual blocks (conv, BN, ReLU + skip)",
    "net_res_deep100": "100 residual blocks: depth made trainable by skips",
}

GREY_NOTE = (
    "This picture has almost no colour. The nets learned from colour photos, where blue sky often goes with "
    "airplanes and green or brown backgrounds with birds; here they can go by shape alone, so trust their answers "
    "less."
)

INSIDE = (
    "**Kernels** are the weights a conv layer slides over its input: one 3×3 patch per input channel and output "
    "channel, the same at every position. Blue is negative, red positive, white zero, on one scale per layer "
    "(squeezed at the top, so that a few large weights do not wash out the rest). "
    "**Feature maps** are what the layers output for your image (the first 8 channels of each layer, one "
    "colour scale per layer): each pooling halves the map, and deeper maps "
    "respond to larger, more abstract patterns. Maps that can go negative (after tanh) are blue to red like the "
    "kernels; maps after ReLU go from dark (zero) to yellow (strong)."
)
FC_INSIDE = (
    "The fully connected net has no kernels: each of its 1,024 first-layer units has its own weight for every one "
    "of the 3,072 input values. Below, the weights of 16 units laid out as images: a unit is tied to pixel positions, "
    "so an airplane moved by a few pixels meets different weights. (Weights summed over R, G and B.)"
)

TRANSLATION = (
    "A convolution applies the same kernel everywhere, and pooling forgets exactly where a feature was: move the "
    "object and a convnet sees the same features, a little elsewhere. The fully connected net has a weight per pixel, "
    "so a shifted image is, to it, a different input. Slide the image left and right: what a shift does inside the "
    "first layer, then each net's confidence (one image can go either way: every net learned from crops shifted by "
    "up to 4 pixels; the validation curves further down are the measure). Pixels shifted in take the dataset's mean "
    "colour."
)
TRANSLATION_INSIDE = (
    "**Inside the first layer.** A conv layer applies the same kernels at every position, so when the image moves, "
    "its feature map moves with it and is otherwise the same (*equivariance*); pooling and the later layers then "
    "turn the same features, a little elsewhere, into a similar answer for small shifts (the curves below show how "
    "far that holds). The fully connected net's first layer has a weight per pixel and no positions: a shifted "
    "image makes its units respond differently, and its later layers must have learned each position. (r compares "
    "the layer before and after the shift, every channel of it, less a map's columns shifted in: 1 is the same.)"
)
TRANSLATION_VALIDATION = (
    "On the validation images the model cards report on, shifted the same way (computed when the nets were trained). "
    "All nets were trained with random crops of ±4 pixels, so each copes with small shifts. The fully connected net "
    "is the least accurate at every shift. Beyond ±4 pixels every net loses accuracy: a convnet's kernels find a "
    "feature anywhere, but its last layers are fully connected and still care where the features end up."
)

RECEPTIVE_FIELD = (
    "A unit of a conv layer sees only a patch of the image: its **receptive field**. Each 3×3 conv widens it by 2 "
    "units of the layer below, and each 2×2 pooling doubles what one unit spans, so depth and pooling let later "
    "layers see larger parts of the image with the same small kernels. Pick a layer, then click a unit on its map "
    "(or use the sliders). It uses the Classify tab's image (or the first example)."
)

SHARING = (
    "Weight sharing is why convolutions need so few parameters: a conv layer's size depends on its kernel and "
    "channels, not on the image. A fully connected layer producing the same number of outputs needs a weight for "
    "every input-output pair, which grows with the fourth power of the image side."
)

SKIPS = (
    "Depth needs **skip connections**. Training moves each weight by the loss's gradient, which reaches a layer only "
    "through every layer after it, each multiplying it by a factor of its own: over 100 layers the factors compound. "
    "A residual block adds its input to what it computes (`out = relu(bn(conv(x))) + x`), so the gradient also has a "
    "path around every block. Below, a stack of such blocks as the book initialises it, before any training: the "
    "gradient that reaches each block's convolution, with the skips and without (the same weights). With a few "
    "blocks the two hardly differ; with 100 the plain stack's first blocks get orders of magnitude more than its "
    "last, and no one learning rate suits both ends. Trained as `net_res_deep100` was, the 100 blocks without skips "
    "stayed at chance (0.49-0.50 validation accuracy; 0.896 with them, on the same split)."
)


def times(ratio: float) -> str:
    """A ratio as the Skip connections tab says it: 1.4×, 28×, 8,451,851×."""
    if ratio == float("inf"):
        return "∞× (a block gets none)"
    return f"{ratio:.1f}×" if ratio < 10 else f"{ratio:,.0f}×"


def skips_caption(blocks: int, with_skips: tuple[float, ...], without_skips: tuple[float, ...]) -> str:
    """What the figure shows: how far apart the blocks' gradients are, with skips and without."""
    if blocks == 1:
        return (f"**1 block**: nothing along the stack to compare; its gradient is {with_skips[0]:.3g} with the "
                f"skip, {without_skips[0]:.3g} without. Add blocks.")
    spread = [max(norms) / min(norms) if min(norms) > 0 else float("inf") for norms in (with_skips, without_skips)]
    return (f"**{blocks} blocks**: the largest gradient a block gets is **{times(spread[0])}** the smallest with "
            f"skips, **{times(spread[1])}** without.")


COMPARE = (
    "The chapter's figure: accuracy against size. Going from the fully connected net to the first convnet buys "
    "accuracy with far fewer parameters; after that, each change moves it by a few points at most, and not always up. "
    "A skip connection costs no parameters (`net_depth` and `net_res` "
    "both have 16,130): what skips buy is that a very deep stack trains at all (the Skip connections tab shows why). "
    "The 100-block net had far fewer "
    "epochs than the 10-block one (the table's last column) and is still short of it. "
    "Hollow marks are the book's validation accuracies (the official CIFAR-10 test images, 100 epochs of plain SGD), "
    "joined to ours (a held-out 10% of the training images)."
)
