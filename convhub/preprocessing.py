"""What a net sees: any PIL image becomes a normalized 3x32x32 tensor, exactly as the training data did."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision.transforms import v2

CIFAR2_CLASSES = ("airplane", "bird")
# Per-channel statistics of the 50,000 CIFAR-10 training images (the book's values).
CIFAR_MEAN = (0.4915, 0.4823, 0.4468)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
INPUT_SIZE = (3, 32, 32)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any mode (RGBA, LA, P with transparency, L, I;16, CMYK...) to RGB; transparent areas become white."""
    image = ImageOps.exif_transpose(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode == "La":  # premultiplied alpha: Pillow converts it to LA only
        image = image.convert("LA")
    if image.mode in ("RGBA", "RGBa", "LA", "PA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16/32-bit greyscale: scale to 8 bits instead of clipping at 255. Through numpy, which reads every
        # byte order (Pillow's point() refuses I;16B and I;16L). Mode "I" says nothing of the range: values that all
        # fit in 8 bits (an L image converted to I) are kept as they are.
        pixels = np.asarray(image).astype(np.int64)
        if image.mode != "I" or pixels.max(initial=0) > 255:
            pixels = pixels // 256
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "L")
    if image.mode == "F":
        image = image.convert("L")
    return image.convert("RGB")


class CenterSquare(torch.nn.Module):
    """Crop the largest centered square, so resizing keeps the aspect ratio of the object (CIFAR is square)."""

    def forward(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        return image.crop((left, top, left + side, top + side))


def build_transforms(size: int = 32, mean=CIFAR_MEAN, std=CIFAR_STD) -> v2.Compose:
    """PIL image -> float tensor (3, size, size), like torchvision's ``weights.transforms()``."""
    return v2.Compose([
        v2.Lambda(to_rgb),
        CenterSquare(),
        v2.Resize((size, size), interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean, std),
    ])


def normalize_uint8(images: torch.Tensor, mean=CIFAR_MEAN, std=CIFAR_STD) -> torch.Tensor:
    """Batch of uint8 NCHW tensors (the in-memory training data) -> normalized float, same maths as build_transforms."""
    mean_t = torch.tensor(mean, device=images.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=images.device).view(1, 3, 1, 1)
    return (images.float().div_(255) - mean_t) / std_t
