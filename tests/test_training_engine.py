"""training.recipes and training.engine: recipes, the training loop (loss goes down, stop_at), metrics."""

from __future__ import annotations

from dataclasses import replace

import convhub
from convhub.preprocessing import normalize_uint8
import pytest
import torch
from test_training_helpers import (make_image_folder, one_torch_thread,  # noqa: F401 - autouse fixture
                                   scramble_batch_norm_statistics)
from training import engine
from training.data import CIFAR2, Split, load_cifar2
from training.recipes import BOOK, DEFAULT, recipe_for


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> CIFAR2:
    return load_cifar2(make_image_folder(tmp_path_factory.mktemp("engine") / "d", 60), val_fraction=0.25, seed=0)


# --- recipes --------------------------------------------------------------------------------------------------------


def test_book_recipe_is_the_chapters():
    book = recipe_for("net", "book")
    assert (book.lr, book.batch_size, book.epochs) == (1e-2, 64, 100)
    assert not book.augment and book.momentum == 0 and book.weight_decay == 0 and book.schedule == "constant"
    assert "no augmentation" in book.describe()
    assert recipe_for("net_res_deep", "book").lr == 3e-3 and recipe_for("net_res_deep100", "book").lr == 3e-3


def test_default_recipe_per_net_and_overrides():
    assert recipe_for("net_width") == DEFAULT
    assert recipe_for("net").warmup_fraction == 0.05 and "(5% warm-up)" in recipe_for("net").describe()
    assert "warm-up" not in DEFAULT.describe()
    assert recipe_for("net_res_deep").epochs > DEFAULT.epochs
    assert DEFAULT.augment and DEFAULT.momentum > 0 and DEFAULT.schedule == "onecycle"
    changed = recipe_for("net", "book", epochs=3, lr=None, batch_size=8)  # None keeps the recipe's value
    assert (changed.epochs, changed.lr, changed.batch_size) == (3, BOOK.lr, 8)
    assert changed.to_dict()["batch_size"] == 8
    with pytest.raises(ValueError, match="unknown recipe"):
        recipe_for("net", "fast")
    with pytest.raises(ValueError, match="whiten_first_conv must be one of directions, pairs or None"):
        recipe_for("net", whiten_first_conv="yes")  # recipe_sweep --set passes strings through


# --- training loop --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("warmup_fraction", [0.05, 0.15, 0.5])
def test_the_one_cycle_schedule_peaks_at_the_recipes_rate_for_any_number_of_steps(warmup_fraction):
    """A short run (small data, few epochs) must not trip OneCycleLR: a warm-up of exactly one step divides by zero
    there (5% of 20 steps)."""
    from dataclasses import replace

    recipe = replace(recipe_for("net"), warmup_fraction=warmup_fraction)
    for total in range(1, 80):
        weight = torch.nn.Parameter(torch.zeros(1))
        optimizer = torch.optim.SGD([weight], lr=recipe.lr)
        scheduler = engine.one_cycle(optimizer, recipe, total)
        rates = []
        for _ in range(total):
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
        assert (scheduler is None) == (total < 3)
        peak = rates.index(max(rates))
        assert max(rates) <= recipe.lr + 1e-12 and (total < 20 or max(rates) >= 0.9 * recipe.lr), total
        assert total < 3 or rates[0] == pytest.approx(recipe.lr / 10), total  # warms up from a tenth
        assert all(a >= b for a, b in zip(rates[peak:], rates[peak + 1:])), total  # then only anneals


@pytest.mark.parametrize("recipe", ["default", "book"])
def test_training_lowers_the_loss_and_beats_chance(data, recipe):
    torch.manual_seed(0)
    model = convhub.create("net")
    result = engine.train(model, data, recipe_for("net", recipe, epochs=4, batch_size=16), device="cpu",
                          precision="fp32", seed=0, progress=False)

    history = result.history
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"]
    assert all(a["seconds"] <= b["seconds"] for a, b in zip(history, history[1:]))
    after = history[-1]["val_accuracy"]
    assert after >= 0.9  # chance is 0.5 on this balanced validation split
    assert after == engine.metrics(model, data.val, convhub.CIFAR2_CLASSES)["accuracy"]  # measured in eval mode
    assert not model.training
    assert result.images_per_second > 0 and result.seconds >= history[-1]["seconds"]


def test_stop_at_ends_training_at_the_first_epoch_reaching_it(data):
    recipe = recipe_for("net", "book", epochs=5, batch_size=16)
    result = engine.train(convhub.create("net"), data, recipe, device="cpu", precision="fp32", progress=False,
                          stop_at=0.0)
    assert len(result.history) == 1
    assert result.epochs_to(0.0) == 1 and result.seconds_to(0.0) == result.history[0]["seconds"]

    result = engine.train(convhub.create("net"), data, recipe, device="cpu", precision="fp32", progress=False,
                          stop_at=1.01)  # unreachable: every epoch runs
    assert len(result.history) == 5
    assert result.epochs_to(1.01) is None and result.seconds_to(1.01) is None


def test_time_and_epochs_to_accuracy_pick_the_first_epoch_reaching_it():
    result = engine.TrainResult(history=[
        {"epoch": 1, "val_accuracy": 0.70, "seconds": 1.5},
        {"epoch": 2, "val_accuracy": 0.91, "seconds": 3.0},
        {"epoch": 3, "val_accuracy": 0.88, "seconds": 4.5},
        {"epoch": 4, "val_accuracy": 0.95, "seconds": 6.0},
    ])
    assert (result.epochs_to(0.89), result.seconds_to(0.89)) == (2, 3.0)
    assert (result.epochs_to(0.93), result.seconds_to(0.93)) == (4, 6.0)
    assert result.epochs_to(0.99) is None


def test_same_seed_same_weights_in_process(data):
    recipe = recipe_for("net", "default", epochs=2, batch_size=16)  # augmentation draws from the seeded generator
    weights = []
    for seed in (3, 3, 4):
        torch.manual_seed(0)  # the same initial weights: only the training run's seed varies
        model = convhub.create("net")
        engine.train(model, data, recipe, device="cpu", precision="fp32", seed=seed, progress=False)
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])


def test_residual_init_starts_deep_stacks_near_the_identity():
    torch.manual_seed(0)
    book = convhub.create("net_res_deep100")  # the book's init: every block's BN weight 0.5
    near_identity = convhub.create("net_res_deep100")
    assert engine.init_residual_blocks(near_identity, 0.05) == 100
    assert engine.init_residual_blocks(convhub.create("net"), 0.05) == 0  # no residual blocks: nothing to do
    assert all(torch.all(block.batch_norm.weight == 0.05) for block in near_identity.resblocks)

    x = torch.randn(8, 32, 16, 16)
    with torch.no_grad():
        drift = {name: ((m.resblocks(x) - x).norm() / x.norm()).item()
                 for name, m in (("book", book), ("near_identity", near_identity))}
    assert drift["near_identity"] < 0.2 * drift["book"]  # the stream grows ~10x less through 100 blocks


def test_train_applies_the_recipes_residual_init(data):
    recipe = recipe_for("net", "default", epochs=1, batch_size=16, lr=0.0)  # lr 0: weights keep their init
    assert recipe.residual_init is None
    model = convhub.create("net_res_deep", n_blocks=2)
    engine.train(model, data, recipe, device="cpu", precision="fp32", progress=False)
    assert all(torch.all(block.batch_norm.weight == 0.5) for block in model.resblocks)  # the book's, untouched

    engine.train(model, data, replace(recipe, residual_init=0.1), device="cpu", precision="fp32", progress=False)
    assert all(torch.all(block.batch_norm.weight == 0.1) for block in model.resblocks)
    assert recipe_for("net_res_deep100").residual_init is not None
    assert "BN weight starts at" in recipe_for("net_res_deep100").describe()


@pytest.mark.parametrize("pairs", [False, True])
def test_whitening_decorrelates_the_first_convs_outputs(pairs):
    torch.manual_seed(0)
    smooth = torch.nn.functional.interpolate(torch.rand(600, 3, 8, 8), size=32, mode="bilinear")
    images = (smooth * 200 + torch.rand(600, 3, 32, 32) * 55).to(torch.uint8)  # neighbours correlate, as in photos
    model = convhub.create("net_width")  # 32 filters, 27 values in a 3x3 RGB patch
    initial = model.conv1.weight.detach().clone()
    conv = engine.whiten_first_conv(model, images, pairs=pairs)
    assert conv is model.conv1
    with torch.no_grad():  # no padding: the patches the covariance was taken from
        out = torch.nn.functional.conv2d(normalize_uint8(images), conv.weight, conv.bias)
    out = out.transpose(0, 1).reshape(32, -1).double()
    directions = 16 if pairs else 27  # pairs: 16 directions and their negatives; else every direction there is
    if pairs:
        assert torch.allclose(out[16:], -out[:16], atol=1e-4)
    else:
        assert torch.equal(conv.weight[27:], initial[27:])  # the 5 filters left over keep their initialisation
    assert out[:directions].mean(1).abs().max() < 1e-3  # centred by the biases
    covariance = out[:directions] @ out[:directions].T / out.shape[1]
    variances = covariance.diagonal()
    assert (covariance - torch.diag(variances)).abs().max() < 1e-3  # decorrelated
    assert variances.min() > 0.95 and variances.max() < 1 + 1e-3  # unit variance, less the small eps it adds


def test_whitening_leaves_nets_without_an_image_conv_alone():
    images = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8)
    fc = convhub.create("fc")
    before = {k: v.clone() for k, v in fc.state_dict().items()}
    assert engine.whiten_first_conv(fc, images) is None
    assert all(torch.equal(before[k], v) for k, v in fc.state_dict().items())
    assert engine.whiten_first_conv(convhub.create("net"), images[:0]) is None  # no images: nothing to learn from


def test_train_whitens_the_first_conv_when_the_recipe_says_so(data):
    recipe = recipe_for("net", "default", epochs=1, batch_size=16, lr=0.0)  # lr 0: weights keep their init
    assert recipe.whiten_first_conv == "directions" and "whitening" in recipe.describe()
    assert not recipe_for("fc").whiten_first_conv and not recipe_for("net", "book").whiten_first_conv
    for whiten in ("directions", "pairs", None):
        torch.manual_seed(0)
        model = convhub.create("net")
        initial = model.conv1.weight.detach().clone()
        expected = engine.whiten_first_conv(convhub.create("net"), data.train.images, pairs=whiten == "pairs")
        engine.train(model, data, replace(recipe, whiten_first_conv=whiten), device="cpu", precision="fp32",
                     progress=False)
        assert torch.allclose(model.conv1.weight, expected.weight if whiten else initial, atol=1e-6)


class _Constant(torch.nn.Module):
    """Always predicts ``label`` (with a parameter, as predict_labels needs one to find the device)."""

    def __init__(self, label: int, value: float = 1.0):
        super().__init__()
        self.label, self.value = label, value
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        logits = torch.zeros(len(x), 2) + self.w
        logits[:, self.label] = self.value
        return logits


def test_metrics_confusion_matrix_rows_are_true_classes():
    labels = torch.tensor([0] * 7 + [1] * 3)
    split = Split(torch.zeros(10, 3, 32, 32, dtype=torch.uint8), labels)
    model = _Constant(label=1).train()
    result = engine.metrics(model, split, ("airplane", "bird"))
    assert result["confusion_matrix"] == [[0, 7], [0, 3]]
    assert result["accuracy"] == 0.3  # the counts' ratio, exactly: float32's was 0.30000001192092896
    assert result["per_class_accuracy"] == {"airplane": 0.0, "bird": 1.0}
    assert result["n_images"] == 10
    assert model.training  # predict_labels switches to eval and back


def test_the_last_validation_pass_is_the_cards_and_is_not_run_again(data):
    model = convhub.create("net")
    result = engine.train(model, data, recipe_for("net", epochs=2, batch_size=16), device="cpu", precision="fp32",
                          progress=False)
    assert torch.equal(result.val_predictions, engine.predict_labels(model, data.val.images))  # the final weights'
    assert result.history[-1]["val_accuracy"] == \
        engine.metrics(model, data.val, ("airplane", "bird"), result.val_predictions)["accuracy"]
    # given predictions are taken as they are: a net that always says bird, with airplane for every image
    split = Split(torch.zeros(10, 3, 32, 32, dtype=torch.uint8), torch.tensor([0] * 7 + [1] * 3))
    given = engine.metrics(_Constant(label=1), split, ("airplane", "bird"), torch.zeros(10, dtype=torch.int64))
    assert given["confusion_matrix"] == [[7, 0], [3, 0]] and given["accuracy"] == 0.7
    given = engine.metrics(_Constant(label=1), split, ("airplane", "bird"), torch.tensor([0] * 5 + [1] * 5))
    assert given["accuracy"] == 0.8 and given["per_class_accuracy"] == {"airplane": 5 / 7, "bird": 1.0}


def test_a_diverging_run_raises_a_clear_error(data):
    model = _Constant(label=0, value=float("nan"))
    with pytest.raises(FloatingPointError, match="diverged at epoch 1.*lower --lr"):
        engine.train(model, data, recipe_for("net", "book", epochs=2), device="cpu", precision="fp32",
                     progress=False)


def test_bf16_autocast_only_where_asked_or_supported():
    cpu = torch.device("cpu")
    assert isinstance(engine.autocast(cpu, "fp32"), type(engine.autocast(cpu, "fp32")))
    with engine.autocast(cpu, "bf16"):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    with engine.autocast(cpu, "fp32"):
        assert not torch.is_autocast_enabled("cpu")
    with engine.autocast(cpu, "auto"):
        assert torch.is_autocast_enabled("cpu") == engine.bf16_supported(cpu)


@pytest.mark.parametrize("name", ["tpu", "bogus", "cuda:x", "meta"])
def test_an_unknown_device_is_a_clear_error(name):
    with pytest.raises(convhub.ConvHubError, match="use auto, cpu, cuda or cuda:N"):
        engine.pick_device(name)


def test_devices_that_exist_are_picked():
    assert engine.pick_device("cpu") == torch.device("cpu")
    assert engine.pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available():
        assert engine.pick_device("cuda").type == "cuda"
        with pytest.raises(convhub.ConvHubError, match="only"):
            engine.pick_device(f"cuda:{torch.cuda.device_count()}")
    else:
        with pytest.raises(convhub.ConvHubError, match="sees no CUDA GPU"):
            engine.pick_device("cuda")


def test_the_deep_nets_and_four_small_ones_get_shorter_schedules_where_a_cpu_trains_in_fp32():
    deep, deep_fp32 = recipe_for("net_res_deep"), recipe_for("net_res_deep", fp32_cpu=True)
    assert deep_fp32 == replace(deep, epochs=40)
    deep100, deep100_fp32 = recipe_for("net_res_deep100"), recipe_for("net_res_deep100", fp32_cpu=True)
    # fewer epochs, each of which gets further from a whitened start
    assert deep100_fp32 == replace(deep100, epochs=4, whiten_first_conv="pairs") and deep100.whiten_first_conv is None
    # a third fewer epochs for four of the small nets; net, net_width and net_dropout keep theirs
    assert {name: recipe_for(name, fp32_cpu=True).epochs for name in ("fc", "net_batchnorm", "net_depth", "net_res")} \
        == {"fc": 20, "net_batchnorm": 16, "net_depth": 16, "net_res": 16}
    for name in ("fc", "net_batchnorm", "net_depth", "net_res"):  # only the epochs change
        shorter = recipe_for(name, fp32_cpu=True)
        assert shorter == replace(recipe_for(name), epochs=shorter.epochs)
    assert all(recipe_for(name, fp32_cpu=True) == recipe_for(name) for name in ("net", "net_width", "net_dropout"))
    assert recipe_for("net_res_deep", "book", fp32_cpu=True) == recipe_for("net_res_deep", "book")
    assert recipe_for("net_res_deep", fp32_cpu=True, epochs=3).epochs == 3  # --epochs still wins


def test_predictions_come_from_the_inference_copy_and_match_the_net(data):
    """predict_labels runs graph.for_inference's copy in small batches: the labels are the net's own, the batch
    norm's running statistics used (eval mode), and the net is left training."""
    torch.manual_seed(0)
    model = scramble_batch_norm_statistics(convhub.create("net_batchnorm").train())  # batch norm and dropout
    images = data.train.images
    with torch.inference_mode():
        expected = model.eval()(normalize_uint8(images)).argmax(1)
    model.train()
    assert len(images) > 7
    assert torch.equal(engine.predict_labels(model, images, batch_size=7), expected)  # a ragged last batch too
    assert model.training
