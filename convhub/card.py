"""The model card (README.md) saved next to the weights: what the net is, how to use it (with convhub, or with
plain PyTorch and nothing else), and how well it did on which data."""

from __future__ import annotations

import inspect
import json
import math
import re
import textwrap

from huggingface_hub import EvalResult, ModelCard, ModelCardData, PyTorchModelHubMixin
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from .config import ConfigError, Float, Int, IntList
from .errors import one_line

BOOK_VAL_ACCURACY = {  # Deep Learning with PyTorch, ch. 7-8 notebooks (validation = CIFAR-10 test images)
    "fc": 0.80, "net": 0.89, "net_width": 0.90, "net_dropout": 0.88, "net_batchnorm": 0.89,
    "net_depth": 0.90, "net_res": 0.90, "net_res_deep100": 0.86,
}
BOOK_NOTES = {
    "net_dropout": "the book measured it in train mode (its `validate` never calls `model.eval()`)",
    "net_batchnorm": "the book measured it in train mode (its `validate` never calls `model.eval()`)",
    "net_res_deep100": "the book's net shared one block 100 times (75,810 parameters); ours has 100 distinct blocks",
}
SHARED_BLOCK_NOTE = (
    "The book's notebook builds `NetResDeep` with `n_blocks * [ResBlock(n_chans1)]`: one block shared by every "
    "position, 75,810 parameters whatever the depth. These weights have a distinct block at every position "
    "({params:,} parameters), so they load into the class above (or convhub's), not into the notebook's."
)
INSTALL_CONVHUB = 'pip install "convhub @ git+https://github.com/convhub/convhub"'
RECORD_DIGITS = 4

TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

`{{ architecture }}` from chapter 8 ("Using convolutions to generalize") of *Deep Learning with PyTorch*,
for CIFAR-2: **airplane vs bird**, 32x32 RGB images. {{ description }}

| | |
|---|---|
| zoo name | `{{ model_name }}` |
| parameters | {{ "{:,}".format(params) }} |
| config | `{{ config }}` |
| classes | {{ class_names }} |
| input | 3x32x32, center square crop, bilinear resize, then normalize with mean {{ mean }} and std {{ std }} |

## Use it

With convhub, which reads the class and the preprocessing from `config.json`:

```bash
{{ install_convhub }}
```

```python
import convhub
from PIL import Image

model = convhub.load("{{ repo_id }}")   # a {{ architecture }}, with the preprocessing of its config.json
print(model.predict(Image.open("bird.jpg")))  # {"airplane": 0.03, "bird": 0.97}; paths and tensors work too
x = model.transforms()(Image.open("bird.jpg")).unsqueeze(0)  # as torchvision's weights.transforms()
logits = model(x)
```

With plain PyTorch only (`pip install torch safetensors huggingface_hub pillow`): the net as the book writes it,
and these weights.

```python
{{ plain_pytorch }}
```
{% if shared_block_note %}
{{ shared_block_note }}
{% endif %}
Weights are stored as safetensors only; loading never unpickles anything.
{% if training %}
## Training

| metric | value |
|---|---|
| validation accuracy | {{ "%.4f"|format(training.val_accuracy) }} |
| train accuracy | {{ "%.4f"|format(training.train_accuracy) }} |
{% for name, acc in (training.per_class_accuracy or {}).items() %}| val accuracy, {{ name }} | {{ "n/a" if acc is none else "%.4f"|format(acc) }} |
{% endfor %}| epochs | {{ training.epochs }} |
| training time | {{ "%.0f"|format(training.seconds) }} s on {{ training.device }}{% if training.precision %}, {{ training.precision }}{% endif %} |

- Data: {{ training.dataset }}; validation: {{ training.validation }}.
- Recipe `{{ training.recipe }}`: {{ training.recipe_description }}
- Seed: {{ training.seed }}; convhub {{ training.convhub_version }}, torch {{ training.torch_version }}.
{% if book_accuracy %}
**Book vs ours:** the book reports {{ "%.2f"|format(book_accuracy) }} validation accuracy for this net
(on the official CIFAR-10 test images of the two classes, 100 epochs of plain SGD){% if book_note %}; note that {{ book_note }}{% endif %}.
{{ "Our validation split is carved from the training images, so the numbers are close but not identical measurements." if carved else "" }}
{% endif %}{% else %}
## Training

These weights are untrained (fresh initialisation). Train them with `python -m training train --model {{ model_name }}`.
{% endif %}
## Source

[ConvHub](https://github.com/convhub/convhub) reimplements the book's nets (the book's code carries no license).
"""


# Enough to make text of any markup: no link or image without "[", "]" and "!", no HTML without "<", no cell break
# without "|"; "(", ")" and "#" in the middle of a line are text already (and ours have them: "cpu (AMD EPYC)").
_MARKDOWN = re.compile(r"([\\`*_\[\]<>!|~])")


def plain_markdown(text) -> str:
    """``text`` as Markdown that shows it as it is, on one line: what a stranger's repo, dataset folder or server
    says reaches model cards and the Space's page, where its ![image](url) would load, its <b> or [link](url) show,
    its `|` or line break split a table, and a bare URL become a link. Characters that print nothing (ESC, BEL...)
    show as U+FFFD."""
    return _MARKDOWN.sub(r"\\\1", one_line(text)).replace("://", ":\\/\\/").replace("@", "\\@")


def _shown(training: dict) -> dict:
    """The record as the card's text shows it: every text field and class name as plain Markdown (the YAML front
    matter keeps the values as they are)."""
    return {key: plain_markdown(value) if isinstance(value, str) and key not in ("recipe", "model_name") else
            {plain_markdown(k): v for k, v in value.items()} if key == "per_class_accuracy" and value else value
            for key, value in training.items()}


def repo_hint(model_name: str) -> str:
    return f"<namespace>/convhub-{model_name.replace('_', '-')}"


def _plain_class(cls) -> str:
    """A zoo class's source as a plain ``nn.Module``: the mixin base and convhub's config checks dropped."""
    source = textwrap.dedent(inspect.getsource(cls))
    source = re.sub(r"^class (\w+)\(ConvHubModel\):", r"class \1(nn.Module):", source, flags=re.M)
    return re.sub(r"^    config_spec = .*\n\n?", "", source, flags=re.M)


def plain_pytorch(model, repo_id: str) -> str:
    """Code that rebuilds ``model`` and loads its published weights with torch, safetensors and huggingface_hub."""
    module = type(model).__module__  # the net's classes, from the one under convhub's base (the mixin's child) down
    classes = [c for c in reversed(type(model).__mro__)
               if c.__module__ == module and PyTorchModelHubMixin not in c.__bases__]
    helpers = {type(m) for m in model.modules() if type(m).__module__ == type(model).__module__} - set(classes)
    sources = [_plain_class(c) for c in sorted(helpers, key=lambda c: c.__name__)] + [_plain_class(c) for c in classes]
    args = ", ".join(f"{k}={v!r}" for k, v in (model._hub_mixin_config or {}).items())
    data = model.data_config
    side = data.input_size[-1]
    return "\n".join([
        "import torch",
        "import torch.nn.functional as F",
        "from huggingface_hub import hf_hub_download",
        "from PIL import Image",
        "from safetensors.torch import load_file",
        "from torch import nn",
        "",
        "",
        *(s.rstrip() + "\n\n" for s in sources),
        f"model = {type(model).__name__}({args})",
        f'model.load_state_dict(load_file(hf_hub_download("{repo_id}", "model.safetensors")))',
        "model.eval()",
        "",
        "# The preprocessing the weights were trained with: a centered square, "
        f"{side}x{side} (bilinear), then normalized.",
        'image = Image.open("bird.jpg").convert("RGB")',
        "side = min(image.size)",
        "left, top = (image.width - side) // 2, (image.height - side) // 2",
        f"image = image.crop((left, top, left + side, top + side)).resize(({side}, {side}), Image.BILINEAR)",
        f"x = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view({side}, {side}, 3)",
        "x = x.permute(2, 0, 1).float().div(255)",
        f"x = ((x - torch.tensor({list(data.mean)}).view(3, 1, 1)) / torch.tensor({list(data.std)}).view(3, 1, 1))"
        ".unsqueeze(0)",
        "with torch.no_grad():",
        f"    print(dict(zip({list(data.class_names)}, model(x).softmax(1)[0].tolist())))",
    ])


def rounded(record: dict) -> dict:
    """The training record as plain JSON types with metrics rounded (YAML would write str/float subclasses, such
    as torch.__version__, as python objects that no safe loader reads back)."""
    def walk(value):
        if isinstance(value, float):
            return round(value, RECORD_DIGITS)
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk(json.loads(json.dumps(record, default=str)))


CIFAR10_ON_THE_HUB = "uoft-cs/cifar10"  # CIFAR-10 from its authors' organisation
CIFAR2_FROM_CIFAR10 = "CIFAR-10 airplane + bird (CIFAR-2)"


def is_hub_id(text) -> bool:
    """Whether the Hub would take ``text`` as a repo's id: what a card's `datasets` metadata may name."""
    try:
        validate_repo_id(text)
    except (HFValidationError, TypeError, ValueError):
        return False
    return True


def linked_dataset(training: dict | None) -> str | None:
    """The Hub dataset a training record names: its `dataset_id`, or, in a record from before there was one, what
    its `dataset` text proves (CIFAR-10's batches, a Hub dataset's id); None for a folder of unknown origin."""
    if not training:
        return None
    if training.get("dataset_id"):
        return training["dataset_id"]
    described = str(training.get("dataset") or "")
    if described == "CIFAR-10 python batches":
        return CIFAR10_ON_THE_HUB
    name = described.removesuffix(" (datasets)")
    return name if described.endswith(" (datasets)") and is_hub_id(name) else None


def _eval_result(training: dict, dataset_id: str | None) -> EvalResult:
    """The model-index entry, naming the data as it was: ``dataset_id`` (linked_dataset's; its airplanes and birds),
    else the local data as `transformers` names it ("imagefolder"), and which split."""
    carved = "of it" in str(training.get("validation", ""))
    split = f"train (held-out: {training['validation']})" if carved else "test"
    described = str(training.get("dataset") or "local data")
    if dataset_id == CIFAR10_ON_THE_HUB:
        name = CIFAR2_FROM_CIFAR10
    else:
        name = f"{(dataset_id or described)[:180]}: airplane + bird"
    local = "imagefolder" if described.startswith("image folder") else "local"
    return EvalResult(
        task_type="image-classification", task_name="Image Classification",
        dataset_type=dataset_id or local, dataset_name=name,
        dataset_split=split[:200], metric_type="accuracy", metric_name="Accuracy",
        metric_value=round(float(training["val_accuracy"]), RECORD_DIGITS),
    )


def model_card(model, training: dict | None = None, repo_id: str | None = None) -> ModelCard:
    """Card for ``model``; ``training`` (from the training package) adds metrics and a model-index block;
    ``repo_id`` is the repo the card will live in (its snippets use it)."""
    name = model.model_name
    info = model._hub_mixin_info
    data = ModelCardData(**info.model_card_data.to_dict())
    dataset_id = linked_dataset(training)
    if dataset_id:  # the Hub's link to the data; none for a folder of unknown origin
        data.datasets = [dataset_id]
    if training:
        data.model_name = f"convhub-{name.replace('_', '-')}"
        data.eval_results = [_eval_result(training, dataset_id)]
        # Machine-readable copy of the whole training record, read back by `training push` and the Space.
        data.convhub = rounded(training)
    repo_id = repo_id or repo_hint(name)
    config = {k: v for k, v in (model._hub_mixin_config or {}).items()}
    shared = type(model).__name__ == "NetResDeep"
    return ModelCard.from_template(
        card_data=data,
        template_str=TEMPLATE,
        title=f"ConvHub {name} ({type(model).__name__}, CIFAR-2)",
        architecture=type(model).__name__,
        model_name=name,
        description=(type(model).__doc__ or "").strip(),
        params=model.num_params,
        config=config,
        class_names=", ".join(plain_markdown(name) for name in model.class_names),
        mean=list(model.data_config.mean),
        std=list(model.data_config.std),
        repo_id=repo_id,
        install_convhub=INSTALL_CONVHUB,
        plain_pytorch=plain_pytorch(model, repo_id),
        shared_block_note=SHARED_BLOCK_NOTE.format(params=model.num_params) if shared else "",
        training=_shown(rounded(training)) if training else None,
        carved=bool(training) and "of it" in str(training.get("validation", "")),
        book_accuracy=BOOK_VAL_ACCURACY.get(name),
        book_note=BOOK_NOTES.get(name),
    )


MAX_CARD_BYTES = 256 * 1024  # ours are ~8 KB
TEXT = 500  # characters a record's descriptive fields may have
RECORD_FIELDS = {  # what a training record may hold, and how each value is checked; other keys are dropped
    "model_name": str, "params": Int(0, 10**9), "val_accuracy": Float(0, 1), "train_accuracy": Float(0, 1),
    "epochs": Int(0, 10**6), "seconds": Float(0, 10**9), "images_per_second": Float(0, 10**9),
    "n_train": Int(0, 10**9), "n_val": Int(0, 10**9), "seed": Int(-2**63, 2**63), "device": str, "precision": str,
    "dataset": str, "dataset_id": str, "validation": str, "recipe": str, "recipe_description": str,
    "convhub_version": str, "torch_version": str,
}


# What a results table and a card's model-index need of a record (the Space shows whatever a record has), and the
# names among them, which end up in tables: one word, never a line break or a `|`.
COMPLETE_RECORD = ("model_name", "params", "val_accuracy", "train_accuracy", "epochs", "seconds", "recipe")
NAME_FIELDS = ("model_name", "recipe")


def clean_record(record, source: str) -> dict:
    """A card's training record with every value checked (a hostile card must not break the Space that reads it,
    nor inject markup into its pages); keys we do not know are dropped."""
    if not isinstance(record, dict):
        raise ConfigError(f"{source}: the 'convhub' training record must be a mapping")
    for key in NAME_FIELDS:
        value = record.get(key)
        if value is not None and not (isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", value)):
            raise ConfigError(f"{source}: {key!r} must be a name of at most 100 letters, digits, '_', '.' or '-'")
    if record.get("dataset_id") is not None and not is_hub_id(record["dataset_id"]):  # goes into `datasets:`
        raise ConfigError(f"{source}: 'dataset_id' must be a Hub dataset id such as uoft-cs/cifar10")
    clean = {}
    for key, kind in RECORD_FIELDS.items():
        if record.get(key) is None:
            continue
        value = record[key]
        if kind is str:
            if not isinstance(value, str) or len(value) > TEXT or not value.isprintable():
                # printable: a control character (U+0085 too, which YAML reads back as a line break) is no text
                raise ConfigError(f"{source}: {key!r} must be one line of text of at most {TEXT} characters")
            clean[key] = value
        else:
            clean[key] = kind.check(key, value, source)
    per_class = record.get("per_class_accuracy")
    if per_class is not None:
        if not isinstance(per_class, dict) or len(per_class) > 16:
            raise ConfigError(f"{source}: 'per_class_accuracy' must map at most 16 class names to accuracies")
        clean["per_class_accuracy"] = {
            str(name)[:64]: None if acc is None else Float(0, 1).check(f"per_class_accuracy[{name!r}]", acc, source)
            for name, acc in per_class.items()}
    matrix = record.get("confusion_matrix")
    if matrix is not None:
        if not isinstance(matrix, list) or len(matrix) > 16:
            raise ConfigError(f"{source}: 'confusion_matrix' must be at most 16 rows")
        clean["confusion_matrix"] = [IntList(0, 16, Int(0, 10**9)).check(f"confusion_matrix[{i}]", row, source)
                                     for i, row in enumerate(matrix)]
    config = record.get("recipe_config")
    if isinstance(config, dict) and len(config) <= 50:
        clean["recipe_config"] = {str(k)[:64]: v for k, v in config.items()
                                  if isinstance(v, (bool, int, str)) or v is None
                                  or (isinstance(v, float) and math.isfinite(v))}
    return clean


def training_record(model_dir) -> dict | None:
    """The training record a saved model's card carries (its `convhub` metadata), checked; None for untrained
    weights. A card that is too large, not valid YAML or holds bad values is a ConfigError."""
    from pathlib import Path

    card = Path(model_dir) / "README.md"
    if not card.is_file():
        return None
    if card.stat().st_size > MAX_CARD_BYTES:
        raise ConfigError(f"{card} is {card.stat().st_size:,} bytes; a convhub model card is at most "
                          f"{MAX_CARD_BYTES:,}")
    try:
        record = _front_matter(card.read_text(encoding="utf-8")).get("convhub")
    except Exception as error:  # noqa: BLE001 - YAML and the card parser raise many types for a broken card
        raise ConfigError(f"{card} cannot be read as a model card: {str(error)[:200]}") from None
    return None if record is None else clean_record(record, str(card))


FRONT_MATTER = re.compile(r"^\s*---(?:\r\n|\r|\n)([\S\s]*?)(?:\r\n|\r|\n)---[ \t]*(?:\r\n|\n|$)")  # as the Hub's


def _front_matter(text: str) -> dict:
    """A card's YAML metadata, read without building the rest of it (ModelCard.load makes one EvalResult per
    model-index entry) and without YAML aliases: with them, a 7 KB card named millions of entries."""
    import yaml

    class NoAliases(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                raise yaml.YAMLError("YAML aliases (*name) are not read in a model card")
            return super().compose_node(parent, index)

    match = FRONT_MATTER.match(text)
    data = yaml.load(match[1], Loader=NoAliases) if match else None  # noqa: S506 - a SafeLoader
    return data if isinstance(data, dict) else {}
