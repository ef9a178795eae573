"""What a net sees: any image (a file, a PIL image or a tensor) becomes a normalized 3x32x32 tensor, exactly as the
training data did. Opening an image is bounded: a small file may claim billions of pixels, a path may be a FIFO.

Plain Pillow and torch (the operations torchvision's transforms would call): importing torchvision costs a served
Space more start-up time than torch itself.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import stat
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .config import DataConfig
from .errors import ConvHubError

DEFAULT_DATA_CONFIG = DataConfig()
CIFAR2_CLASSES = DEFAULT_DATA_CONFIG.class_names
CIFAR_MEAN = DEFAULT_DATA_CONFIG.mean
CIFAR_STD = DEFAULT_DATA_CONFIG.std
INPUT_SIZE = DEFAULT_DATA_CONFIG.input_size

# Decoding costs memory by the pixel, whatever the file's size: a 360 KB PNG can hold 13000x13000 16-bit pixels
# (gigabytes once decoded). Larger images are refused before decoding. 50 MP covers today's phone cameras.
MAX_IMAGE_PIXELS = 50_000_000
# The formats convhub opens. Pillow knows many more, and some are traps: EPS runs Ghostscript on the file, ICO and
# ICNS decode an embedded PNG of any size inside Image.open, before any size check.
FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")  # JPEG includes MPO (phones' multi-picture JPEGs)
# libjpeg decodes every scan of a progressive JPEG over the whole image: thousands of tiny scans in a small file
# tie up a core for minutes. Real progressive JPEGs have about 10.
MAX_JPEG_SCANS = 64

ImageInput = Image.Image | str | Path | BinaryIO | bytes | np.ndarray | torch.Tensor


def _check_pixels(image: Image.Image, name: str) -> None:
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        raise ConvHubError(
            f"{name} is {width}x{height} = {width * height / 1e6:.0f} megapixels; convhub reads images of at most "
            f"{MAX_IMAGE_PIXELS / 1e6:.0f} megapixels (convhub.preprocessing.MAX_IMAGE_PIXELS)")


def _open_regular_file(path: Path):
    """A binary file object, refusing FIFOs, devices and folders without blocking on them."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as error:
        raise ConvHubError(f"cannot read {path} as an image: {error.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConvHubError(f"cannot read {path} as an image: not a regular file")
    return os.fdopen(fd, "rb")


def _check_tiff(image: Image.Image, name: str) -> None:
    """libtiff allocates a whole tile before decoding it: a 1x1 image whose tile claims 32768x32768 asked for 1 GiB.
    A tile covers the image with at most one row and column of padding (tiles are multiples of 16 pixels). JPEG
    inside TIFF is refused: its scans are not counted, nor is it decoded at a reduced scale."""
    tags = image.tag_v2
    width, height = image.size
    if tags.get(322, 0) > width + 256 or tags.get(323, 0) > height + 256:  # TileWidth, TileLength
        raise ConvHubError(f"{name}: its TIFF tiles ({tags.get(322)}x{tags.get(323)}) are larger than the image "
                           f"({width}x{height})")
    if tags.get(259) in (6, 7):  # Compression: old-style and new-style JPEG
        raise ConvHubError(f"{name}: JPEG-compressed TIFF is not supported; save it as a JPEG or a PNG")


def _check_jpeg_scans(file, name: str) -> None:
    """Counted in 1 MB chunks, stopping past the limit: a sparse 2 GB file read whole took 4.6 GB."""
    position = file.tell()
    file.seek(0)
    scans, tail = 0, b""
    while scans <= MAX_JPEG_SCANS and (chunk := file.read(2**20)):
        # start-of-scan markers (0xFF in entropy-coded data is stuffed as FF00); one may straddle two chunks, and a
        # 1-byte tail holds none, so none is counted twice
        scans += (tail + chunk).count(b"\xff\xda")
        tail = chunk[-1:]
    more = scans > MAX_JPEG_SCANS and bool(file.read(1))  # stopped before the end: there may be more
    file.seek(position)
    if scans > MAX_JPEG_SCANS:
        counted = f"{scans}{' or more' if more else ''}"
        raise ConvHubError(f"{name} is a JPEG of {counted} scans; convhub reads JPEGs of at most {MAX_JPEG_SCANS}")


def open_image(image: Image.Image | str | Path | BinaryIO | bytes | np.ndarray,
               draft: tuple[int, int] | None = None) -> Image.Image:
    """A decoded PIL image from a path, a file object, a file's bytes, a uint8 array (H, W) or (H, W, C) or an
    image, with a clear error for anything else.

    Only FORMATS are opened; the pixel count (and a JPEG's number of scans) is checked before anything is decoded.
    ``draft`` lets JPEGs decode at a reduced scale no smaller than that size (libjpeg's DCT scaling): far faster for
    large photos that will be shrunk to 32x32 anyway. Other formats ignore it.
    """
    if isinstance(image, np.ndarray):
        image = _from_array(image)
    if isinstance(image, Image.Image):
        _check_pixels(image, "the image")
        return image
    if isinstance(image, (bytes, bytearray, memoryview)):
        image = io.BytesIO(image.tobytes() if isinstance(image, memoryview) else image)  # any layout of view
    if not isinstance(image, (str, os.PathLike)) and not hasattr(image, "read"):
        raise ConvHubError(
            f"an image is a path, a file object, its bytes, a PIL image, a uint8 array (H, W, C) or a tensor (C, H, "
            f"W), not {type(image).__name__}: for several images, pass a list of them")
    name = str(image) if isinstance(image, (str, Path)) else "the file"
    try:
        # a file object stays the caller's to close
        source = contextlib.nullcontext(image) if hasattr(image, "read") else _open_regular_file(Path(image))
        with source as file:
            opened = Image.open(file, formats=FORMATS)
            _check_pixels(opened, name)
            if opened.format in ("JPEG", "MPO"):
                _check_jpeg_scans(file, name)
            if opened.format == "TIFF":
                _check_tiff(opened, name)
            if draft is not None:
                opened.draft(None, draft)
            opened.load()  # decoded into memory: the image outlives the file (no copy of it)
            return opened
    except ConvHubError:
        raise
    except UnidentifiedImageError:
        reason = f"not a {', '.join(FORMATS[:-1])} or {FORMATS[-1]} file convhub can read"
    except Exception as error:  # noqa: BLE001 - a hostile file can make a decoder raise anything
        reason = re.sub(r"<_io\.\w+ name=[^>]*>", "the file", str(error)) or type(error).__name__
    # Raised here, outside the except block: an error raised inside it keeps the decoder's error as its context, and
    # with it the decoder and its buffers (a 155-byte TIFF's 1 GiB tile) for as long as the error is kept.
    raise ConvHubError(f"cannot read {name} as an image: {reason}")


def _from_array(array: np.ndarray) -> Image.Image:
    """A uint8 array as Pillow reads one (RGB, RGBA, greyscale), pixels checked before any copy."""
    if (array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4)))
            or 0 in array.shape[:2]):
        raise ConvHubError(f"an image array must be uint8 (H, W) or (H, W, C) with C 1, 3 or 4, not {array.dtype} "
                           f"{array.shape}; for CHW or float data, pass a tensor")
    if array.shape[0] * array.shape[1] > MAX_IMAGE_PIXELS:
        raise ConvHubError(f"the array is {array.shape[1]}x{array.shape[0]} pixels; convhub reads images of at most "
                           f"{MAX_IMAGE_PIXELS / 1e6:.0f} megapixels (convhub.preprocessing.MAX_IMAGE_PIXELS)")
    return Image.fromarray(array[:, :, 0] if array.ndim == 3 and array.shape[2] == 1 else array)


def upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a broken EXIF block (not valid TIFF) is ignored, as browsers do."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - Pillow raises SyntaxError, ValueError, struct.error... for malformed EXIF
        return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Any mode (RGBA, LA, P with transparency, L, I;16, CMYK...) to RGB; transparent areas become white."""
    image = upright(image)
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
        # fit in 8 bits (an L image converted to I) are kept as they are. int32 holds every value of both modes.
        pixels = np.asarray(image).astype(np.int32)
        if image.mode != "I" or pixels.max(initial=0) > 255:
            pixels >>= 8
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "L")
    if image.mode == "F":
        image = image.convert("L")
    return image.convert("RGB")


class CenterSquare(torch.nn.Module):
    """Crop the largest centered square, so resizing keeps the aspect ratio of the object (CIFAR is square)."""

    def forward(self, image: Image.Image | torch.Tensor) -> Image.Image | torch.Tensor:
        if isinstance(image, torch.Tensor):
            height, width = image.shape[-2:]
            side = min(width, height)
            top, left = (height - side) // 2, (width - side) // 2
            return image[..., top:top + side, left:left + side]
        width, height = image.size
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        return image.crop((left, top, left + side, top + side))


IMAGE_DTYPES = (torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64)


def as_image_tensor(image: torch.Tensor, check_values: bool = True) -> torch.Tensor:
    """A tensor image (C, H, W) or batch (N, C, H, W), uint8 or float in [0, 1], as RGB; greyscale is replicated.
    Its size is checked before its values (an expanded 3x30000x30000 view took a minute to scan)."""
    if image.dtype not in IMAGE_DTYPES:
        kind = "uint8 (0-255) or float (0-1)" if image.dtype == torch.uint8 or not image.is_floating_point() else \
            "float16, bfloat16, float32 or float64"
        raise ConvHubError(f"an image tensor must be {kind}, not {image.dtype}")
    if image.is_meta:
        raise ConvHubError("an image tensor must hold its values: a meta tensor has none")
    if image.layout != torch.strided:
        raise ConvHubError(f"an image tensor must be dense, not {image.layout}: call .to_dense() first")
    if image.dim() not in (3, 4) or image.shape[-3] not in (1, 3) or 0 in image.shape:
        raise ConvHubError(f"an image tensor must be (C, H, W) or (N, C, H, W) with C 1 or 3, not {tuple(image.shape)}")
    if image.shape[-1] * image.shape[-2] > MAX_IMAGE_PIXELS:
        raise ConvHubError(f"the tensor's images are {image.shape[-1]}x{image.shape[-2]} pixels; convhub reads images "
                           f"of at most {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels (convhub.preprocessing.MAX_IMAGE_PIXELS)")
    if check_values and image.is_floating_point():
        low, high = image.aminmax()
        if not (0 <= low <= high <= 1):  # NaN fails too
            raise ConvHubError(
                f"a float image tensor must hold values in [0, 1], not {float(low):.4g} to {float(high):.4g}: "
                "divide 0-255 values by 255 (or pass them as uint8), and pass the image itself, not its normalized "
                "transforms() output")
    if image.shape[-3] == 1:
        image = image.expand(*image.shape[:-3], 3, *image.shape[-2:])
    return image


_PIL_FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
                "nearest": Image.Resampling.NEAREST}


def to_uint8(image: Image.Image, data_config: DataConfig = DEFAULT_DATA_CONFIG) -> torch.Tensor:
    """The first half of the preprocessing, shared by training data and predictions: RGB, the centred square (or
    the whole image), resized by Pillow (its bilinear filter widens with the scale: antialiased), uint8 (3, H, W)."""
    rgb = to_rgb(image)
    if data_config.crop == "center_square":
        rgb = CenterSquare()(rgb)
    height, width = data_config.input_size[-2:]
    if rgb.size != (width, height):
        rgb = rgb.resize((width, height), _PIL_FILTERS[data_config.interpolation])
    return torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)


class ImageTransform(torch.nn.Module):
    """PIL image or tensor (CHW or NCHW, uint8 or float) -> normalized float tensor, like torchvision's
    ``weights.transforms()``. A PIL image takes the path the training data took (to_uint8); a tensor is cropped and
    resized by torch (antialiased), then both are scaled to [0, 1] and normalized."""

    def __init__(self, data_config: DataConfig = DEFAULT_DATA_CONFIG):
        super().__init__()
        self.data_config = data_config
        self.register_buffer("mean", torch.tensor(data_config.mean).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(data_config.std).view(3, 1, 1), persistent=False)

    def forward(self, image: Image.Image | torch.Tensor) -> torch.Tensor:
        if isinstance(image, Image.Image):
            tensor = to_uint8(image, self.data_config)
        elif isinstance(image, torch.Tensor):
            tensor = self._resize(as_image_tensor(image))
        else:
            raise ConvHubError(f"expected a PIL image or a tensor, not {type(image).__name__}")
        scaled = tensor.float().div(255) if tensor.dtype == torch.uint8 else tensor.float()
        return (scaled - self.mean) / self.std

    def _resize(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.data_config.crop == "center_square":
            tensor = CenterSquare()(tensor)
        size = tuple(self.data_config.input_size[-2:])
        if tuple(tensor.shape[-2:]) == size:
            return tensor
        mode = self.data_config.interpolation
        batch = tensor if tensor.dim() == 4 else tensor.unsqueeze(0)
        dtype = batch.dtype
        resized = torch.nn.functional.interpolate(
            batch.float(), size=size, mode=mode, antialias=mode != "nearest",
            **({} if mode == "nearest" else {"align_corners": False}))
        if dtype == torch.uint8:
            resized = resized.round_().clamp_(0, 255).to(torch.uint8)
        return resized if tensor.dim() == 4 else resized[0]

    def extra_repr(self) -> str:
        c = self.data_config
        return (f"crop={c.crop}, resize={list(c.input_size[-2:])} ({c.interpolation}, antialias), "
                f"mean={list(c.mean)}, std={list(c.std)}")


def build_transforms(size: int = 32, mean=CIFAR_MEAN, std=CIFAR_STD) -> ImageTransform:
    """The default preprocessing with another normalization (kept for callers of convhub 0.1)."""
    if size != INPUT_SIZE[-1]:
        raise ConvHubError(f"these nets take {INPUT_SIZE[-1]}x{INPUT_SIZE[-1]} inputs, not {size}x{size}")
    return ImageTransform(DataConfig(mean=tuple(mean), std=tuple(std)))


def normalize_uint8(images: torch.Tensor, mean=CIFAR_MEAN, std=CIFAR_STD) -> torch.Tensor:
    """Batch of uint8 NCHW tensors (the in-memory training data) -> normalized float, same maths as the transform."""
    mean_t = torch.tensor(mean, device=images.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=images.device).view(1, 3, 1, 1)
    return (images.float().div_(255) - mean_t) / std_t


def translate(images: torch.Tensor, dx: int, dy: int = 0) -> torch.Tensor:
    """A batch of normalized images (N, C, H, W) shifted by whole pixels, right and down for positive values. The
    pixels moved in are 0, which after normalization is the dataset's mean colour, so no edge is invented."""
    height, width = images.shape[-2:]
    shifted = torch.zeros_like(images)
    if abs(dx) >= width or abs(dy) >= height:
        return shifted
    shifted[..., max(dy, 0):height + min(dy, 0), max(dx, 0):width + min(dx, 0)] = \
        images[..., max(-dy, 0):height + min(-dy, 0), max(-dx, 0):width + min(-dx, 0)]
    return shifted
