"""What a config.json may hold. Configs come from strangers' repos, so every value is checked (type, range) before a
net is built from it, and a bad one is refused with its key named: no value may allocate without bound, and none
reaches a constructor as a type it would trip over.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass
from pathlib import Path

from .errors import ConvHubError

# Bump when config.json changes in a way older convhub cannot read.
CONFIG_FORMAT = 1
MAX_CONFIG_BYTES = 64 * 1024  # ours are ~700 bytes
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
CROPS = ("center_square", "none")


class ConfigError(ConvHubError):
    """config.json is malformed or holds a value convhub refuses; the message names the key."""


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def parse_config(path: Path) -> dict:
    """config.json as a dict: strict JSON (no NaN/Infinity), bounded in size, depth and number length."""
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path} is {size:,} bytes; a convhub config.json is at most {MAX_CONFIG_BYTES:,}")
        with path.open("rb") as file:  # read at most the bound: a /proc file says it has 0 bytes
            data = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path} is more than {MAX_CONFIG_BYTES:,} bytes, the most a convhub config.json may hold")
    try:
        config = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:  # JSONDecodeError is a ValueError; so are
        # 5000-digit integers (int max str digits), and deep nesting overflows the parser's recursion
        reason = "nested too deeply" if isinstance(error, RecursionError) else str(error)[:200]
        raise ConfigError(f"{path} is not valid JSON: {reason}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path} must hold a JSON object, not {type(config).__name__}")
    return config


# --- one checker per kind of value; each names the key and the range --------------------------------------------


@dataclass(frozen=True)
class Int:
    lo: int
    hi: int

    def check(self, key: str, value, source: str) -> int:
        # numbers.Integral: numpy's integers too (create()'s overrides), and a plain int comes back
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise ConfigError(f"{source}: {key!r} must be an integer from {self.lo} to {self.hi}, not {_show(value)}")
        if not self.lo <= value <= self.hi:
            raise ConfigError(f"{source}: {key!r} is {_show(value)}; it must be from {self.lo} to {self.hi}")
        return int(value)


@dataclass(frozen=True)
class Float:
    lo: float
    hi: float
    hi_inclusive: bool = True

    def check(self, key: str, value, source: str) -> float:
        bound = f"from {self.lo:g} to {self.hi:g}{'' if self.hi_inclusive else ' (exclusive)'}"
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not _finite(value):
            raise ConfigError(f"{source}: {key!r} must be a number {bound}, not {_show(value)}")
        if not (self.lo <= value <= self.hi and (self.hi_inclusive or value < self.hi)):
            raise ConfigError(f"{source}: {key!r} is {_show(value)}; it must be {bound}")
        return float(value)


def _finite(value: int | float) -> bool:
    """JSON's integers have no bound: one of 400 digits is no float (math.isfinite raises OverflowError on it)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


@dataclass(frozen=True)
class IntList:
    min_len: int
    max_len: int
    item: Int

    def check(self, key: str, value, source: str) -> list[int]:
        if not isinstance(value, (list, tuple)) or not self.min_len <= len(value) <= self.max_len:
            raise ConfigError(f"{source}: {key!r} must be a list of {self.min_len} to {self.max_len} integers, "
                              f"not {_show(value)}")
        return [self.item.check(f"{key}[{i}]", v, source) for i, v in enumerate(value)]


def _show(value) -> str:
    """A config value as the message shows it: JSON, except strings, which are quoted as Python does."""
    if isinstance(value, str) or not (isinstance(value, (list, dict, bool)) or value is None):
        text = repr(value)
    else:
        text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- the keys every convhub config has ---------------------------------------------------------------------------


def check_format(config: dict, source: str, version: str) -> None:
    """A config this convhub can read: an integer format_version from 1 to ours (absent means 1)."""
    fmt = config.get("format_version", 1)
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        raise ConfigError(f"{source}: 'format_version' must be a positive integer, not {_show(fmt)}")
    if fmt > CONFIG_FORMAT:
        saved_by = config.get("convhub_version")
        saved_by = saved_by if isinstance(saved_by, str) and len(saved_by) < 40 else "?"
        # a version no newer than this one (a config edited by hand) would only contradict the upgrade asked for
        by = f"saved by convhub {saved_by}, " if saved_by != version else ""
        raise ConfigError(f"{source} has config format {fmt} ({by}this convhub {version} reads format "
                          f"{CONFIG_FORMAT}): upgrade with `pip install -U convhub`")


def architecture_of(config: dict, source: str, known) -> str:
    architecture = config.get("architecture")
    if architecture is None:
        raise ConfigError(f"{source} names no 'architecture': not a convhub model config")
    if not isinstance(architecture, str) or architecture not in known:
        raise ConfigError(f"{source}: unknown architecture {_show(architecture)}; known: {', '.join(sorted(known))}")
    return architecture


@dataclass(frozen=True)
class DataConfig:
    """How images must be fed to the net (timm's pretrained_cfg idea): written to config.json and used on load."""

    class_names: tuple[str, ...] = ("airplane", "bird")
    input_size: tuple[int, int, int] = (3, 32, 32)
    mean: tuple[float, float, float] = (0.4915, 0.4823, 0.4468)  # the 50,000 CIFAR-10 training images (the book's)
    std: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)
    interpolation: str = "bilinear"
    crop: str = "center_square"

    def __post_init__(self) -> None:
        # built by hand too: DataConfig(interpolation="bicubik") failed later, in torch, and mean=(5, 5, 5) passed
        _checked(self.to_config(), f"{type(self).__name__}(...)")

    def to_config(self) -> dict:
        return {"num_classes": len(self.class_names), "class_names": list(self.class_names),
                "input_size": list(self.input_size), "mean": list(self.mean), "std": list(self.std),
                "interpolation": self.interpolation, "crop": self.crop}

    @classmethod
    def from_config(cls, config: dict, source: str) -> DataConfig:
        """The preprocessing a config asks for; absent keys take the defaults, bad ones are refused by name.

        The nets' classifiers fix the number of classes (2) and the input size (3x32x32): a config may rename the
        classes or change the normalization, never those.
        """
        return cls(**_checked(config, source))


def _checked(config: dict, source: str) -> dict:
    """DataConfig's values from a config (a config.json's, or a DataConfig's own), each checked."""
    default = DataConfig  # its fields' defaults, as class attributes
    names = config.get("class_names", list(default.class_names))
    if (not isinstance(names, list) or len(names) != len(default.class_names)
            or not all(isinstance(n, str) and 0 < len(n) <= 64 and n.isprintable() for n in names)
            or len(set(names)) != len(names)):
        raise ConfigError(f"{source}: 'class_names' must be {len(default.class_names)} distinct names of 1 to 64 "
                          f"printable characters, not {_show(names)}")
    if "num_classes" in config and config["num_classes"] != len(names):
        raise ConfigError(f"{source}: 'num_classes' is {_show(config['num_classes'])}; these nets have "
                          f"{len(names)} classes")
    size = config.get("input_size", list(default.input_size))
    if size != list(default.input_size):
        raise ConfigError(f"{source}: 'input_size' is {_show(size)}; these nets take "
                          f"{list(default.input_size)} (their classifiers are sized for 32x32 inputs)")
    mean = _triple(config, "mean", default.mean, Float(0.0, 1.0), source)
    std = _triple(config, "std", default.std, Float(1e-3, 10.0), source)
    choices = {"interpolation": INTERPOLATIONS, "crop": CROPS}
    picked = {}
    for key, allowed in choices.items():
        value = config.get(key, getattr(default, key))
        if value not in allowed:
            raise ConfigError(f"{source}: {key!r} must be one of {', '.join(allowed)}, not {_show(value)}")
        picked[key] = value
    return {"class_names": tuple(names), "input_size": default.input_size, "mean": mean, "std": std, **picked}


def _triple(config: dict, key: str, default: tuple, item: Float, source: str) -> tuple[float, float, float]:
    value = config.get(key, list(default))
    if not isinstance(value, list) or len(value) != 3:
        raise ConfigError(f"{source}: {key!r} must be 3 numbers (R, G, B), not {_show(value)}")
    return tuple(item.check(f"{key}[{i}]", v, source) for i, v in enumerate(value))
