"""predict() and the preprocessing behind it: any PIL image (or path) -> {"airplane": p, "bird": q}."""

from __future__ import annotations

import io
from pathlib import Path

import convhub
import numpy as np
import pytest
import torch
from conftest import peak_memory
from convhub.preprocessing import normalize_uint8, to_rgb
from PIL import Image

pytestmark = pytest.mark.usefixtures("one_thread")

RNG_SEED = 3


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return convhub.create("net_batchnorm").eval()


def noise(width: int, height: int, seed: int = RNG_SEED) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def rgb(width: int = 48, height: int = 40) -> Image.Image:
    return Image.fromarray(noise(width, height))


def assert_probabilities(result):
    assert list(result) == ["airplane", "bird"]
    assert all(isinstance(p, float) and 0.0 <= p <= 1.0 for p in result.values())
    assert sum(result.values()) == pytest.approx(1.0, abs=1e-5)


def same(a: dict, b: dict) -> bool:
    return all(abs(a[k] - b[k]) < 1e-6 for k in a) and list(a) == list(b)


def palette_with_transparency() -> Image.Image:
    image = rgb().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    image.info["transparency"] = 0
    return image


def transparent_rgba() -> Image.Image:
    image = rgb().convert("RGBA")
    image.putalpha(0)
    return image


def uint16_image(mode: str = "I;16") -> Image.Image:
    values = (noise(48, 40)[..., 0].astype(np.uint16) * 257)
    return Image.frombytes(mode, (48, 40), values.astype(">u2" if mode == "I;16B" else "<u2").tobytes())


IMAGES = {
    "RGB": rgb,
    "RGBA": lambda: rgb().convert("RGBA"),
    "RGBA transparent": transparent_rgba,
    "LA": lambda: rgb().convert("LA"),
    "L": lambda: rgb().convert("L"),
    "1": lambda: rgb().convert("1"),
    "P": lambda: rgb().convert("P"),
    "P transparency": palette_with_transparency,
    "PA": lambda: rgb().convert("PA"),
    "I;16": uint16_image,
    "I;16B": lambda: uint16_image("I;16B"),
    "I;16L": lambda: uint16_image("I;16L"),
    "I": lambda: uint16_image().convert("I"),
    "F": lambda: rgb().convert("F"),
    "CMYK": lambda: rgb().convert("CMYK"),
    "YCbCr": lambda: rgb().convert("YCbCr"),
    "1x1": lambda: rgb(1, 1),
    "tiny 3x2": lambda: rgb(3, 2),
    "1x500": lambda: rgb(1, 500),
    "500x1": lambda: rgb(500, 1),
    "large 4000x3000": lambda: Image.new("RGB", (4000, 3000), (90, 140, 200)),
}


@pytest.mark.parametrize("kind", IMAGES)
def test_predict_any_image(model, kind):
    image = IMAGES[kind]()
    assert_probabilities(model.predict(image))
    tensor = model.transforms()(image)
    assert tensor.shape == (3, 32, 32) and tensor.dtype == torch.float32
    assert torch.isfinite(tensor).all()


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA"])
def test_transparent_pixels_are_white(mode):
    image = Image.fromarray(noise(32, 32)).convert(mode)
    alpha = np.zeros((32, 32), dtype=np.uint8)
    alpha[:, :16] = 255  # left half opaque, right half transparent
    image.putalpha(Image.fromarray(alpha))
    pixels = np.asarray(to_rgb(image))
    assert (pixels[:, 16:] == 255).all()
    assert (pixels[:, :16] == np.asarray(image.convert("RGB"))[:, :16]).all()


def test_a_fully_transparent_image_is_a_white_image(model):
    assert same(model.predict(transparent_rgba()), model.predict(Image.new("RGB", (48, 40), "white")))
    assert not same(model.predict(transparent_rgba()), model.predict(rgb()))


def test_palette_transparency_becomes_white():
    image = palette_with_transparency()
    index = np.asarray(image)
    assert (index == 0).any() and (index != 0).any()
    pixels = np.asarray(to_rgb(image))
    assert (pixels[index == 0] == 255).all()
    opaque = np.asarray(image.convert("RGB"))
    assert (pixels[index != 0] == opaque[index != 0]).all()


def test_greyscale_is_replicated_to_three_channels(model):
    grey = rgb().convert("L")
    tensor = model.transforms()(grey)
    unnormalized = tensor * torch.tensor(convhub.CIFAR_STD).view(3, 1, 1) + torch.tensor(convhub.CIFAR_MEAN).view(3, 1, 1)
    torch.testing.assert_close(unnormalized[0], unnormalized[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(unnormalized[0], unnormalized[2], atol=1e-5, rtol=0)
    assert same(model.predict(grey), model.predict(grey.convert("RGB")))


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I;16L", "I"])
def test_16_bit_greyscale_is_scaled_not_clipped(model, mode):
    """v * 257 in 16 bits is v in 8 bits: the same prediction, not a white image."""
    image = uint16_image(mode) if mode != "I" else uint16_image().convert("I")
    eight_bit = Image.fromarray(noise(48, 40)[..., 0])
    assert np.array_equal(np.asarray(to_rgb(image))[..., 0], np.asarray(eight_bit))
    assert same(model.predict(image), model.predict(eight_bit))
    assert not same(model.predict(image), model.predict(Image.new("L", (48, 40), 255)))


def test_32_bit_greyscale_holding_8_bit_values_keeps_them(model):
    eight_bit = Image.fromarray(noise(48, 40)[..., 0])
    as_int32 = eight_bit.convert("I")
    assert np.asarray(as_int32).max() <= 255
    assert np.array_equal(np.asarray(to_rgb(as_int32))[..., 0], np.asarray(eight_bit))  # not 256x darker
    assert same(model.predict(as_int32), model.predict(eight_bit))


@pytest.mark.parametrize(("mode", "plain"), [("La", "LA"), ("RGBa", "RGBA")])
def test_premultiplied_alpha_is_composited_like_plain_alpha(model, mode, plain):
    image = Image.fromarray(noise(32, 32)).convert(plain)
    alpha = np.zeros((32, 32), np.uint8)
    alpha[:, 16:] = 255  # half transparent, half opaque: premultiplying changes nothing visible
    image.putalpha(Image.fromarray(alpha))
    premultiplied = image.convert(mode)
    assert premultiplied.mode == mode
    assert np.array_equal(np.asarray(to_rgb(premultiplied)), np.asarray(to_rgb(image)))
    assert same(model.predict(premultiplied), model.predict(image))


def test_cmyk_is_converted_to_rgb(model):
    image = rgb()
    assert same(model.predict(image.convert("CMYK")), model.predict(image))


@pytest.mark.parametrize(("size", "box"), [
    ((64, 32), (16, 0, 48, 32)),  # wide: the central square
    ((32, 80), (0, 24, 32, 56)),  # tall
    ((33, 32), (0, 0, 32, 32)),  # odd margin rounds down
])
def test_center_square_crop_keeps_the_aspect_ratio(model, size, box):
    image = Image.fromarray(noise(*size))
    torch.testing.assert_close(model.transforms()(image), model.transforms()(image.crop(box)), atol=0, rtol=0)


def test_extreme_aspect_ratio_uses_the_central_pixel(model):
    image = rgb(1, 500)
    centre = image.getpixel((0, 249))
    assert same(model.predict(image), model.predict(Image.new("RGB", (32, 32), centre)))


def test_large_image_is_downscaled_with_antialiasing(model):
    """A 1-pixel checkerboard averages to grey when antialiased (plain subsampling would alias)."""
    rows, cols = np.arange(3000, dtype=np.uint8) % 2, np.arange(4000, dtype=np.uint8) % 2
    board = (rows[:, None] ^ cols[None, :]) * np.uint8(255)
    tensor = model.transforms()(Image.fromarray(board).convert("RGB"))
    grey = model.transforms()(Image.new("RGB", (32, 32), (127, 127, 127)))
    torch.testing.assert_close(tensor, grey, atol=0.05, rtol=0)


def test_exif_orientation_is_applied(model, tmp_path):
    """A photo stored sideways with an EXIF orientation is seen upright, as viewers show it."""
    pixels = noise(60, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = tmp_path / "sideways.png"
    Image.fromarray(pixels).save(path, exif=exif)
    loaded = Image.open(path)
    assert loaded.size == (60, 40) and loaded.getexif()[0x0112] == 6
    upright = Image.fromarray(np.ascontiguousarray(np.rot90(pixels, k=-1)))
    assert upright.size == (40, 60)
    torch.testing.assert_close(model.transforms()(loaded), model.transforms()(upright), atol=0, rtol=0)
    assert same(model.predict(path), model.predict(upright))


def test_transforms_match_the_in_memory_training_path(model):
    """A 32x32 image goes through PIL -> transforms exactly as its uint8 pixels go through normalize_uint8."""
    pixels = noise(32, 32)
    from_pil = model.transforms()(Image.fromarray(pixels))
    from_uint8 = normalize_uint8(torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0))[0]
    assert from_pil.shape == from_uint8.shape == (3, 32, 32)
    torch.testing.assert_close(from_pil, from_uint8, atol=1e-6, rtol=0)
    # and both use the CIFAR statistics: the mean colour maps to ~0
    mean_colour = np.round(np.array(convhub.CIFAR_MEAN) * 255).astype(np.uint8)
    centred = model.transforms()(Image.new("RGB", (32, 32), tuple(int(c) for c in mean_colour)))
    assert centred.abs().max() < 0.01


def test_predict_is_the_softmax_of_the_forward_pass(model):
    image = rgb()
    with torch.no_grad():
        probs = model(model.transforms()(image).unsqueeze(0)).softmax(dim=1)[0]
    result = model.predict(image)
    assert result["airplane"] == pytest.approx(float(probs[0]), abs=1e-6)
    assert result["bird"] == pytest.approx(float(probs[1]), abs=1e-6)


# --- paths and bad files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".webp", ".gif"])
def test_predict_from_a_path(model, tmp_path, suffix):
    path = tmp_path / f"image{suffix}"
    rgb().save(path)
    with Image.open(path) as opened:
        expected = model.predict(opened)
    assert same(model.predict(path), expected)
    assert same(model.predict(str(path)), expected)


def test_predict_from_a_file_object(model):
    buffer = io.BytesIO()
    rgb().save(buffer, format="PNG")
    buffer.seek(0)
    assert same(model.predict(Image.open(buffer)), model.predict(rgb()))


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    rgb(200, 200).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(("name", "content"), [
    ("corrupt.png", b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20),
    ("truncated.png", png_bytes()[:300]),
    ("notes.txt", b"airplane or bird?\n"),
    ("empty.jpg", b""),
    ("weights.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{}      "),
])
def test_bad_files_are_convhub_errors(model, tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(convhub.ConvHubError, match="cannot read .* as an image"):
        model.predict(path)


def test_missing_file_and_folder_are_convhub_errors(model, tmp_path):
    with pytest.raises(convhub.ConvHubError, match="missing.png"):
        model.predict(tmp_path / "missing.png")
    with pytest.raises(convhub.ConvHubError, match="cannot read"):
        model.predict(tmp_path)


# --- train/eval mode -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["net_dropout", "net_batchnorm", "net_res_deep"])
def test_predict_runs_in_eval_mode_and_restores_train_mode(name):
    torch.manual_seed(0)
    model = convhub.create(name).train()
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    image = rgb()
    first = model.predict(image)
    assert model.training and all(m.training for m in model.modules())
    for key, value in model.state_dict().items():  # BatchNorm statistics untouched
        assert torch.equal(value, buffers[key]), key
    assert same(model.predict(image), first)  # no dropout noise: deterministic
    assert same(first, model.eval().predict(image))
    assert not model.training and not any(m.training for m in model.modules())


def test_predict_does_not_track_gradients(model):
    model.predict(rgb())
    assert all(p.grad is None for p in model.parameters())


# --- hostile files (issue #8) -------------------------------------------------------------------------------------


def big_png(tmp_path, mode: str, side: int) -> Path:
    """A PNG that claims side x side pixels in a few hundred KB (it compresses to almost nothing)."""
    path = tmp_path / f"big_{mode.replace(';', '')}.png"
    Image.new(mode, (side, side)).save(path, optimize=False, compress_level=9)
    return path


@pytest.mark.parametrize("mode", ["I;16", "RGB"])
def test_too_many_pixels_are_refused_before_decoding(model, tmp_path, mode):
    path = big_png(tmp_path, mode, 7200)  # 51.8 megapixels: just over the limit, a few MB to write
    assert path.stat().st_size < 2_000_000
    with pytest.raises(convhub.ConvHubError, match=r"7200x7200 = 52 megapixels; convhub reads images of at most "
                                                   r"50 megapixels \(convhub.preprocessing.MAX_IMAGE_PIXELS\)"):
        model.predict(path)
    with Image.open(path) as lazy:  # a lazily opened image is checked before it is decoded too
        with pytest.raises(convhub.ConvHubError, match="megapixels"):
            model.predict(lazy)


def test_an_image_at_the_pixel_limit_is_read(model, tmp_path, monkeypatch):
    monkeypatch.setattr(convhub.preprocessing, "MAX_IMAGE_PIXELS", 300 * 200)
    rgb(300, 200).save(tmp_path / "at_limit.png")
    rgb(301, 200).save(tmp_path / "over.png")
    assert_probabilities(model.predict(tmp_path / "at_limit.png"))
    with pytest.raises(convhub.ConvHubError, match="301x200"):
        model.predict(tmp_path / "over.png")


def jpeg_with_broken_exif(path) -> Path:
    """A JPEG whose APP1 Exif block is not valid TIFF (Pillow raised SyntaxError reading it)."""
    rgb().save(path, exif=b"Exif\x00\x00NOT A TIFF HEADER AT ALL")
    return path


def test_malformed_exif_is_ignored(model, tmp_path):
    path = jpeg_with_broken_exif(tmp_path / "broken_exif.jpg")
    with Image.open(path) as opened:
        expected = model.predict(opened)
    assert_probabilities(expected)
    assert same(model.predict(path), expected)


def test_a_fifo_is_refused_without_blocking(model, tmp_path):
    import os

    fifo = tmp_path / "image.png"
    os.mkfifo(fifo)
    with pytest.raises(convhub.ConvHubError, match="not a regular file"):
        model.predict(fifo)  # opening it for reading would block until a writer came


def test_a_file_object_is_read_and_left_open(model):
    buffer = io.BytesIO()
    rgb().save(buffer, format="PNG")
    buffer.seek(0)
    assert same(model.predict(buffer), model.predict(rgb()))
    assert not buffer.closed


# --- tensors, as torchvision's weights.transforms() takes them ----------------------------------------------------


def test_uint8_and_float_tensors_match_the_pil_path(model):
    pixels = noise(32, 32)
    from_pil = model.transforms()(Image.fromarray(pixels))
    chw = torch.from_numpy(pixels).permute(2, 0, 1)
    torch.testing.assert_close(model.transforms()(chw), from_pil, atol=1e-6, rtol=0)
    torch.testing.assert_close(model.transforms()(chw.float() / 255), from_pil, atol=1e-5, rtol=0)
    assert same(model.predict(chw), model.predict(Image.fromarray(pixels)))


def test_batched_tensors_give_one_result_per_image(model):
    batch = torch.stack([torch.from_numpy(noise(40, 30, seed)).permute(2, 0, 1) for seed in range(4)])
    results = model.predict(batch)
    assert isinstance(results, list) and len(results) == 4
    for seed, result in enumerate(results):
        assert same(result, model.predict(batch[seed]))
    assert model.transforms()(batch).shape == (4, 3, 32, 32)


def test_large_tensor_is_cropped_and_resized_like_a_pil_image(model):
    tensor = model.transforms()(torch.full((3, 400, 600), 128, dtype=torch.uint8))
    pil = model.transforms()(Image.new("RGB", (600, 400), (128, 128, 128)))
    torch.testing.assert_close(tensor, pil, atol=1e-5, rtol=0)


def test_greyscale_tensor_is_replicated(model):
    grey = torch.from_numpy(noise(32, 32)[..., :1]).permute(2, 0, 1)
    torch.testing.assert_close(model.transforms()(grey), model.transforms()(grey.expand(3, -1, -1)))


@pytest.mark.parametrize(("tensor", "message"), [
    (torch.zeros(32, 32, dtype=torch.uint8), r"\(C, H, W\) or \(N, C, H, W\)"),
    (torch.zeros(32, 32, 3, dtype=torch.uint8), "C 1 or 3"),
    (torch.zeros(3, 0, 32), "not .3, 0, 32."),
    (torch.zeros(3, 32, 32, dtype=torch.int64), "uint8 .0-255. or float .0-1., not torch.int64"),
    # 0-255 as floats, and transforms()'s normalized output, were predicted from without a word (0-255: "airplane
    # 1.0" whatever the image)
    (torch.full((3, 32, 32), 200.0), r"values in \[0, 1\], not 200 to 200: divide 0-255 values by 255"),
    (torch.full((3, 32, 32), -0.5), r"not -0.5 to -0.5: .+ not its normalized transforms\(\) output"),
    (torch.full((2, 3, 32, 32), float("nan")), r"values in \[0, 1\], not nan to nan"),
    # each a raw torch error; the expanded view's values took a minute to scan
    (torch.zeros(1, 1, 1).expand(3, 30000, 30000), "30000x30000 pixels; convhub reads images of at most 50 megapixels"),
    (torch.zeros(3, 8, 8, device="meta"), "a meta tensor has none"),
    (torch.zeros(3, 8, 8).to_sparse(), "must be dense, not torch.sparse_coo"),
    (torch.zeros(3, 8, 8).to(torch.float8_e4m3fn), "float16, bfloat16, float32 or float64, not torch.float8_e4m3fn"),
])
def test_bad_tensors_are_clear_errors(model, tensor, message):
    with pytest.raises(convhub.ConvHubError, match=message):
        model.predict(tensor)


def test_arrays_and_bytes_are_images_too(model, tmp_path):
    pixels = noise(40, 30)
    expected = model.predict(Image.fromarray(pixels))
    assert same(model.predict(pixels), expected)  # a uint8 (H, W, C) array, as numpy and Pillow hold images
    Image.fromarray(pixels).save(tmp_path / "noise.png")
    assert same(model.predict((tmp_path / "noise.png").read_bytes()), expected)
    assert same(model.predict(pixels[..., :1]), model.predict(Image.fromarray(pixels[..., 0])))
    data = (tmp_path / "noise.png").read_bytes()
    every_other = memoryview(bytes(b for byte in data for b in (byte, 0)))[::2]  # a view no buffer reads whole
    assert same(model.predict(every_other), expected)  # was a BufferError


def test_a_list_of_images_gives_one_result_each_from_one_forward_pass(model, tmp_path):
    """As a pipeline takes them; a list was "cannot read the file as an image: expected str, bytes or os.PathLike
    object, not list"."""
    pixels = [noise(40, 30, seed) for seed in range(3)]
    Image.fromarray(pixels[0]).save(tmp_path / "first.png")
    images = [tmp_path / "first.png", Image.fromarray(pixels[1]), torch.from_numpy(pixels[2]).permute(2, 0, 1)]
    results = model.predict(images)
    assert len(results) == 3 and all(same(r, model.predict(i)) for r, i in zip(results, images))
    assert model.predict([]) == []
    with pytest.raises(convhub.ConvHubError, match=r"a list's tensors must each be one image \(C, H, W\), not "
                                                   r"\(2, 3, 8, 8\)"):
        model.predict([torch.zeros(2, 3, 8, 8, dtype=torch.uint8)])
    with pytest.raises(convhub.ConvHubError, match="not tuple"):  # a tuple is not a list of images
        model.predict((images[1], images[1]))


@pytest.mark.parametrize(("image", "message"), [
    ([[Image.new("RGB", (8, 8))]], r"^an image is a path, .+, not list: for several images, pass a list of them"),
    (7, "not int: "),
    (np.zeros((3, 32, 32), np.float32), r"must be uint8 \(H, W\) or \(H, W, C\) with C 1, 3 or 4, not float32 "
                                        r"\(3, 32, 32\); for CHW or float data, pass a tensor"),
    (np.zeros((8, 8, 2), np.uint8), r"not uint8 \(8, 8, 2\)"),
    (np.zeros((0, 5, 3), np.uint8), r"not uint8 \(0, 5, 3\)"),  # became a 5x0 image
    (np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), (10_000, 10_000, 3), (0, 0, 0)),
     "the array is 10000x10000 pixels; convhub reads images of at most 50 megapixels"),
])
def test_what_is_not_an_image_is_a_clear_error(model, image, message):
    with pytest.raises(convhub.ConvHubError, match=message):
        model.predict(image)


# --- the preprocessing config.json asks for is the one used ------------------------------------------------------


def test_edited_normalization_and_class_names_are_used_on_load(tmp_path):
    import json

    torch.manual_seed(0)
    convhub.create("net").save_pretrained(tmp_path / "net")
    config_path = tmp_path / "net" / "config.json"
    original = convhub.load(tmp_path / "net")
    config = json.loads(config_path.read_text())
    config.update(mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25], class_names=["plane", "not a plane"],
                  interpolation="nearest", crop="none")
    config_path.write_text(json.dumps(config))
    edited = convhub.load(tmp_path / "net")
    assert edited.class_names == ("plane", "not a plane")
    assert list(edited.predict(rgb())) == ["plane", "not a plane"]
    image = Image.new("RGB", (32, 32), (128, 128, 128))
    assert abs(float(original.transforms()(image).mean()) - float(edited.transforms()(image).mean())) > 0.01
    torch.testing.assert_close(edited.transforms()(image), torch.full((3, 32, 32), (128 / 255 - 0.5) / 0.25))
    stretched = edited.transforms()(rgb(64, 32))  # crop "none": the whole image squeezed to 32x32
    assert stretched.shape == (3, 32, 32)
    edited.save_pretrained(tmp_path / "again")  # and it is written back as it was read
    again = json.loads((tmp_path / "again" / "config.json").read_text())
    assert again["mean"] == [0.5, 0.5, 0.5] and again["class_names"] == ["plane", "not a plane"]
    assert again["crop"] == "none" and again["interpolation"] == "nearest"


def progressive_jpeg_with_scans(path: Path, side: int, scans: int) -> Path:
    """A progressive greyscale JPEG plus ``scans`` tiny extra AC scans, each an 'end of band' run over every block
    (a few bytes each): libjpeg decodes every scan over the whole image, whatever the draft scale."""
    import struct

    buffer = io.BytesIO()
    Image.new("L", (side, side), 128).save(buffer, "JPEG", progressive=True, quality=50)
    data = buffer.getvalue()
    blocks = ((side + 7) // 8) ** 2
    table = b"\xff\xc4" + struct.pack(">H", 20) + b"\x11" + bytes([1] + [0] * 15) + b"\xe0"  # one symbol: EOBRUN
    bits = "".join("0" + "1" * 14 for _ in range(-(-blocks // 32767)))
    bits += "1" * (-len(bits) % 8)
    entropy = bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8)).replace(b"\xff", b"\xff\x00")
    scan = b"\xff\xda" + struct.pack(">H", 8) + bytes([1, 1, 0x01, 1, 63, 0x00]) + entropy
    path.write_bytes(data[:-2] + table + scan * scans + b"\xff\xd9")
    return path


def test_a_jpeg_of_thousands_of_scans_is_refused_before_decoding(model, tmp_path):
    """Each scan costs a decode of the whole image: 5,000 in 570 KB took 35 s of a core."""
    path = progressive_jpeg_with_scans(tmp_path / "scans.jpg", 2000, 3000)
    with pytest.raises(convhub.ConvHubError, match=r"is a JPEG of 300\d scans; convhub reads JPEGs of at most 64"):
        model.predict(path)
    assert_probabilities(model.predict(progressive_jpeg_with_scans(tmp_path / "few.jpg", 64, 5)))


def test_a_sparse_jpeg_of_gigabytes_is_not_read_into_memory(tmp_path):
    """A 32x32 JPEG with a 3 GB sparse tail (a few KB on disk, in a tar or a folder): counting its scans read it
    whole, 2x its size in memory. Measured in a process of its own, as its peak over its memory before."""
    path = tmp_path / "sparse.jpg"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(path, "JPEG")
    with open(path, "r+b") as file:
        file.truncate(3 * 2**30)
    size, peak_kb = peak_memory("from convhub.preprocessing import open_image", "print(open_image(sys.argv[1]).size)",
                                path)
    assert size == "(32, 32)" and peak_kb < 512 * 1024  # KB, for a 3 GB file: it was read whole


@pytest.mark.parametrize(("name", "content"), [
    ("drawing.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n{} loop\n"),  # would run Ghostscript
    ("icon.ico", None),
    ("image.qoi", b"qoif" + bytes(10) + b"\x00" * 8),
])
def test_only_common_image_formats_are_opened(model, tmp_path, name, content):
    path = tmp_path / name
    if content is None:
        Image.new("RGB", (16, 16)).save(path, format="ICO")
    else:
        path.write_bytes(content)
    with pytest.raises(convhub.ConvHubError, match="not a PNG, JPEG, GIF, WEBP, BMP or TIFF file convhub can read"):
        model.predict(path)


def test_decoder_errors_never_show_internal_objects(model, tmp_path):
    path = tmp_path / "truncated.png"
    path.write_bytes(png_bytes()[:120])
    with pytest.raises(convhub.ConvHubError) as info:
        model.predict(path)
    assert "_io." not in str(info.value) and "truncated.png" in str(info.value)


def test_a_decoder_error_keeps_nothing_of_the_decode():
    """The error a caller keeps (a Space's worker thread, until its next request) held the failed decoder's buffers
    through its context: a 155-byte TIFF's 1 GiB tile, per request."""
    from convhub.preprocessing import open_image

    with pytest.raises(convhub.ConvHubError) as info:
        open_image(io.BytesIO(png_bytes()[:120]))
    assert info.value.__context__ is None and info.value.__cause__ is None


def tiled_tiff(width: int, height: int, tile: int, compression: int = 8) -> bytes:
    """A TIFF of one deflate tile, ``tile`` pixels a side, whatever the image's own size (written by hand: Pillow
    writes no tiles)."""
    import struct
    import zlib

    data = zlib.compress(b"\0" * 1024)
    entries = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, compression), (262, 3, 1), (277, 3, 1),
               (322, 4, tile), (323, 4, tile), (324, 4, 0), (325, 4, len(data))]
    offset = 8 + 2 + len(entries) * 12 + 4
    out = b"II*\0" + struct.pack("<IH", 8, len(entries))
    for tag, kind, value in entries:
        value = offset if tag == 324 else value
        out += struct.pack("<HHI", tag, kind, 1) + (struct.pack("<HH", value, 0) if kind == 3 else
                                                     struct.pack("<I", value))
    return out + struct.pack("<I", 0) + data


def test_a_tiff_whose_tiles_are_larger_than_the_image_is_refused_before_decoding():
    from convhub.preprocessing import open_image

    with pytest.raises(convhub.ConvHubError, match=r"TIFF tiles \(32768x32768\) are larger than the image \(1x1\)"):
        open_image(io.BytesIO(tiled_tiff(1, 1, 32768)))
    assert open_image(io.BytesIO(tiled_tiff(20, 20, 32))).size == (20, 20)  # a tile a little past the edge


def test_jpeg_inside_tiff_is_refused(tmp_path):
    """Its scans are not counted, nor is it decoded at a reduced scale (3.6 s of a core for 580 KB)."""
    from convhub.preprocessing import open_image

    path = tmp_path / "photo.tiff"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(path, compression="jpeg")
    with pytest.raises(convhub.ConvHubError, match="JPEG-compressed TIFF is not supported"):
        open_image(path)
    Image.new("RGB", (64, 64), (200, 30, 30)).save(path, compression="tiff_deflate")
    assert open_image(path).size == (64, 64)


def test_translate_moves_pixels_by_hand_worked_amounts():
    from convhub.preprocessing import translate

    x = torch.arange(1, 17, dtype=torch.float32).view(1, 1, 4, 4)  # rows 1-4, 5-8, 9-12, 13-16
    assert translate(x, 1)[0, 0].tolist() == [[0, 1, 2, 3], [0, 5, 6, 7], [0, 9, 10, 11], [0, 13, 14, 15]]
    assert translate(x, -2)[0, 0].tolist() == [[3, 4, 0, 0], [7, 8, 0, 0], [11, 12, 0, 0], [15, 16, 0, 0]]
    assert translate(x, 0, 1)[0, 0].tolist() == [[0, 0, 0, 0], [1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]
    assert translate(x, 1, -1)[0, 0].tolist() == [[0, 5, 6, 7], [0, 9, 10, 11], [0, 13, 14, 15], [0, 0, 0, 0]]
    assert torch.equal(translate(x, 0), x) and translate(x, 0) is not x
    for far in (4, -4, 9):  # everything shifted out: the mean colour (0 after normalization) everywhere
        assert torch.equal(translate(x, far), torch.zeros_like(x))
    batch = torch.randn(3, 3, 32, 32)
    assert torch.equal(translate(batch, 5)[..., 5:], batch[..., :-5])  # every image and channel alike
