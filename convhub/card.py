"""The model card (README.md) saved next to the weights: what the net is, how to use it, how well it did."""

from __future__ import annotations

import json

from huggingface_hub import EvalResult, ModelCard, ModelCardData

BOOK_VAL_ACCURACY = {  # Deep Learning with PyTorch, ch. 7-8 notebooks (validation = CIFAR-10 test images)
    "fc": 0.80, "net": 0.89, "net_width": 0.90, "net_dropout": 0.88, "net_batchnorm": 0.89,
    "net_depth": 0.90, "net_res": 0.90, "net_res_deep100": 0.86,
}
BOOK_NOTES = {
    "net_dropout": "the book measured it in train mode (its `validate` never calls `model.eval()`)",
    "net_batchnorm": "the book measured it in train mode (its `validate` never calls `model.eval()`)",
    "net_res_deep100": "the book's net shared one block 100 times (75,810 parameters); ours has 100 distinct blocks",
}

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

```python
import convhub
from PIL import Image

model = convhub.load("{{ repo_hint }}")       # picks {{ architecture }} from config.json
print(model.predict(Image.open("bird.jpg")))  # {"airplane": 0.03, "bird": 0.97}

x = model.transforms()(Image.open("bird.jpg")).unsqueeze(0)   # the exact preprocessing
logits = model(x)
```

Weights are stored as safetensors only; loading never unpickles anything.
{% if training %}
## Training

| metric | value |
|---|---|
| validation accuracy | {{ "%.4f"|format(training.val_accuracy) }} |
| train accuracy | {{ "%.4f"|format(training.train_accuracy) }} |
{% for name, acc in (training.per_class_accuracy or {}).items() %}| val accuracy, {{ name }} | {{ "n/a" if acc is none else "%.4f"|format(acc) }} |
{% endfor %}| epochs | {{ training.epochs }} |
| training time | {{ "%.0f"|format(training.seconds) }} s on {{ training.device }} |

- Data: {{ training.dataset }}; validation: {{ training.validation }}.
- Recipe `{{ training.recipe }}`: {{ training.recipe_description }}
- Seed: {{ training.seed }}; convhub {{ training.convhub_version }}, torch {{ training.torch_version }}.
{% if book_accuracy %}
**Book vs ours:** the book reports {{ "%.2f"|format(book_accuracy) }} validation accuracy for this net
(on the official CIFAR-10 test images of the two classes, 100 epochs of plain SGD){% if book_note %}; note that {{ book_note }}{% endif %}.
Our validation split is carved from the training images, so the numbers are close but not identical measurements.
{% endif %}{% else %}
## Training

These weights are untrained (fresh initialisation). Train them with `python -m training train --model {{ model_name }}`.
{% endif %}
## Source

[ConvHub](https://github.com/convhub/convhub) reimplements the book's nets (the book's code carries no license).
"""


def model_card(model, training: dict | None = None, repo_id: str | None = None) -> ModelCard:
    """Card for ``model``; ``training`` (from the training package) adds metrics and a model-index block."""
    name = model.model_name
    info = model._hub_mixin_info
    data = ModelCardData(**info.model_card_data.to_dict())
    data.datasets = ["uoft-cs/cifar10"]
    if training:
        data.model_name = f"convhub-{name.replace('_', '-')}"
        data.eval_results = [
            EvalResult(
                task_type="image-classification", task_name="Image Classification",
                dataset_type="uoft-cs/cifar10", dataset_name=training.get("dataset_name", "CIFAR-2 (airplane vs bird)"),
                dataset_split=training.get("split", "validation"),
                metric_type="accuracy", metric_name="Accuracy", metric_value=round(float(training["val_accuracy"]), 4),
            )
        ]
        # Machine-readable copy of the whole training record, read back by `training push` and the Space.
        # As plain JSON types: YAML would write str/float subclasses (torch.__version__, numpy floats) as
        # python objects that no YAML safe loader (nor the Hub) reads back.
        data.convhub = json.loads(json.dumps(training, default=str))
    config = {k: v for k, v in (model._hub_mixin_config or {}).items()}
    return ModelCard.from_template(
        card_data=data,
        template_str=TEMPLATE,
        title=f"ConvHub {model.model_name} ({type(model).__name__}, CIFAR-2)",
        architecture=type(model).__name__,
        model_name=name,
        description=(type(model).__doc__ or "").strip(),
        params=model.num_params,
        config=config,
        class_names=", ".join(model.class_names),
        mean=list(model.hub_config()["mean"]),
        std=list(model.hub_config()["std"]),
        repo_hint=repo_id or f"<namespace>/convhub-{name.replace('_', '-')}",
        training=training,
        book_accuracy=BOOK_VAL_ACCURACY.get(name),
        book_note=BOOK_NOTES.get(name),
    )


def training_record(model_dir) -> dict | None:
    """The training record a saved model's card carries (its `convhub` metadata), or None for untrained weights."""
    from pathlib import Path

    card = Path(model_dir) / "README.md"
    if not card.is_file():
        return None
    return ModelCard.load(card).data.to_dict().get("convhub")
