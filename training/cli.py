"""python -m training {train,zoo,evaluate,report,translation,publish,push}: one command per job."""

from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import signal
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import convhub
import torch
from convhub import CIFAR2_CLASSES
from convhub.card import is_hub_id
from convhub.errors import ConvHubError, one_line, shown
from convhub.hub import shown_endpoint
from convhub.zoo import saved_nets, zoo_name
from safetensors import SafetensorError

from . import allocator, artifacts, engine, parallel, publish, report, starting
from .data import load_cifar2, load_decoded, load_eval_split, save_decoded
from .recipes import RECIPES, recipe_for

log = logging.getLogger("training")


DATASET_ID_AT_PUSH = ("the Hub dataset the images came from, for the card to name and link, in place of what the "
                      "run recorded (default: the run's; `train --dataset-id`)")


def _add_training_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="image folder ROOT/{airplane,bird}, CIFAR-10 python root, "
                        "hf:NAMESPACE/DATASET (CIFAR-10 on the Hub: hf:uoft-cs/cifar10), or a local folder of a "
                        "dataset's parquet files or of datasets' save_to_disk")
    parser.add_argument("--data-revision", help="revision of a Hub dataset")
    parser.add_argument("--dataset-id", type=_dataset_id, help="the Hub dataset the images came from, which the "
                        "model card names and links (default: ID for hf:ID, uoft-cs/cifar10 for a CIFAR-10 root; "
                        "none for a local folder)")
    parser.add_argument("--recipe", choices=RECIPES, default="default",
                        help="default: ours, tuned per net (docs/recipes.md); 'book' reproduces the chapter's")
    parser.add_argument("--epochs", type=_epochs, help="override the recipe's epochs (default: the recipe's, per net)")
    parser.add_argument("--lr", type=_learning_rate, help="override the recipe's peak learning rate")
    parser.add_argument("--batch-size", type=_positive, help="override the recipe's batch size (default: 128; the "
                        "book's 64)")
    parser.add_argument("--seed", type=_seed, default=0, help="seeds the validation split, the initial weights and "
                        "the batches' order and augmentation (default: 0)")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="validation share carved from the training "
                        "data, class by class (default: 0.1; a CIFAR-10 root validates on its test batch instead)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1...")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"),
                        help="override the recipe's precision (auto: bf16 autocast where the hardware has it natively)")
    parser.add_argument("--token", help="Hugging Face token for --push (default: HF_TOKEN or `hf auth login`)")
    parser.add_argument("--private", action="store_true", help="create pushed repos as private (an existing "
                        "public one is refused before training: the Hub keeps its visibility)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--threads", type=_threads, help="torch CPU threads (default: torch's choice; zoo --jobs "
                        "gives each net its share of the cores)")


def _bounded(kind: type, within, what: str):
    """An argparse type: ``text`` as ``kind`` where ``within(value)`` holds, else argparse's one-line error."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not within(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return parse


_positive = _bounded(int, lambda value: value >= 1, "a whole number of at least 1")
# Bounded where torch is not: 10**23 epochs overflowed range()'s length after the data had loaded, and 100,000
# threads crashed OpenMP (a segfault, no message).
_epochs = _bounded(int, lambda value: 1 <= value <= 100_000, "a whole number from 1 to 100,000")
_threads = _bounded(int, lambda value: 1 <= value <= 256, "a whole number from 1 to 256")
# Above 0 and finite: 0 trains nothing (and saved the untrained net), NaN or inf diverge at once.
_learning_rate = _bounded(float, lambda value: 0 < value < math.inf, "a number above 0")
# What torch.manual_seed and a card's record both take.
_seed = _bounded(int, lambda value: -2**63 <= value <= 2**63 - 1, "a whole number from -2**63 to 2**63-1")


def _zoo_model(text: str) -> str:
    """A zoo net's name as `zoo --models`, `publish --only` and convhub.create take it (`net-res` too)."""
    try:
        return zoo_name(text)
    except ConvHubError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _dataset_id(text: str) -> str:
    if not is_hub_id(text):
        raise argparse.ArgumentTypeError(f"{shown(text, 100)} is not a Hub dataset id (such as uoft-cs/cifar10)")
    return text


def _jobs(text: str) -> str:
    return text if text == "auto" else str(_positive(text))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train one net and save it (save_pretrained layout)")
    train.add_argument("--model", required=True, type=_zoo_model, metavar="NAME",
                       help=f"the zoo net to train: {', '.join(convhub.ZOO)}")
    train.add_argument("--out", required=True, help="folder to save the model in (new or empty)")
    train.add_argument("--overwrite", action="store_true", help="replace the model already saved in --out")
    train.add_argument("--push", metavar="REPO", help="also push to this Hub repo (namespace/name)")
    _add_training_args(train)
    # the zoo's decoded copy of --data (data.save_decoded), read instead of decoding --data again
    train.add_argument("--zoo-data", help=argparse.SUPPRESS)

    zoo = commands.add_parser("zoo", help="train every net, then write the results table and plot")
    zoo.add_argument("--out", required=True, help="parent folder: one subfolder per net + results.{md,json} + plot")
    zoo.add_argument("--overwrite", action="store_true", help="replace models already saved in --out")
    zoo.add_argument("--models", default=",".join(convhub.ZOO), help="comma-separated subset of the zoo")
    zoo.add_argument("--push", metavar="NAMESPACE", help="push each net to NAMESPACE/convhub-<name>")
    zoo.add_argument("--jobs", type=_jobs, default="auto",
                     help="nets trained side by side, each in its own process with its share of the cores (auto: 2 "
                          "on a CPU with 2 or more cores, 1 on a GPU)")
    _add_training_args(zoo)

    evaluate = commands.add_parser("evaluate", help="accuracy, per-class accuracy and confusion matrix of a saved net")
    evaluate.add_argument("--model", required=True, help="save_pretrained folder or Hub repo id")
    evaluate.add_argument("--revision")
    evaluate.add_argument("--data", required=True, help="image folder ROOT/{airplane,bird} (all of it), or the test "
                          "images of ROOT/{train,test}, a CIFAR-10 root or hf:ID")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of text")

    summary = commands.add_parser("report", help="rebuild results.{md,json} and the plot from the cards of saved nets")
    summary.add_argument("--out", required=True, help="parent folder of saved nets (as written by zoo)")

    shift = commands.add_parser("translation", help="accuracy of every saved net on validation images shifted by "
                                "-8..+8 pixels, written to translation.json (the Space plots it)")
    shift.add_argument("--models", required=True, help="parent folder of saved nets (as written by zoo)")
    shift.add_argument("--data", required=True, help="the training data the nets were trained on: its validation "
                       "split is carved again with --seed and --val-fraction")
    shift.add_argument("--seed", type=_seed, default=0)
    shift.add_argument("--val-fraction", type=float, default=0.1)
    shift.add_argument("--data-revision", help=argparse.SUPPRESS)

    publish_ = commands.add_parser(
        "publish", help="push every trained net as NS/convhub-<name> and the Space as NS/convhub (no retraining)")
    publish_.add_argument("--namespace", required=True, help="your user or organization on the Hub")
    publish_.add_argument("--from", dest="source", default=str(publish.DEFAULT_SOURCE),
                          help="folder of trained nets, one subfolder per zoo name (default: space/models)")
    publish_.add_argument("--only", help="comma-separated subset of the zoo (the Space still bundles these only)")
    publish_.add_argument("--revision", help="branch to push to in every repo (created if missing; default main)")
    publish_.add_argument("--private", action="store_true", help="create new repos as private (an existing public "
                          "one is refused before any upload: the Hub keeps its visibility)")
    publish_.add_argument("--token", help="Hugging Face write token (default: HF_TOKEN or `hf auth login`)")
    publish_.add_argument("--space", help="the Space repo (default: NAMESPACE/convhub)")
    publish_.add_argument("--dataset-id", type=_dataset_id, help=DATASET_ID_AT_PUSH)
    publish_.add_argument("--dry-run", metavar="OUT", help="write exactly what would be uploaded into OUT; "
                          "contacts nothing")
    publish_.add_argument("--overwrite", action="store_true", help="with --dry-run: replace an earlier dry run")

    push = commands.add_parser("push", help="push a saved model folder to the Hub")
    push.add_argument("--from", dest="source", required=True, help="folder written by train/zoo")
    push.add_argument("--repo", required=True, help="namespace/name")
    push.add_argument("--revision", help="branch to push to (created if missing)")
    push.add_argument("--private", action="store_true", help="create the repo as private (an existing public one "
                      "is refused: the Hub keeps its visibility)")
    push.add_argument("--token", help="Hugging Face write token (default: HF_TOKEN or `hf auth login`)")
    push.add_argument("--dataset-id", type=_dataset_id, help=DATASET_ID_AT_PUSH)
    parser.commands = commands  # main(): a command's own usage for its typos
    return parser


def _fp32_cpu(args, device: torch.device) -> bool:
    """Training will run in fp32 on a CPU (no native bf16), where the deep nets get shorter schedules."""
    return device.type == "cpu" and engine.resolve_precision(device, args.precision or "auto") == "fp32"


def _recipe(name: str, args, fp32_cpu: bool):
    return recipe_for(name, args.recipe, fp32_cpu=fp32_cpu, epochs=args.epochs, lr=args.lr,
                      batch_size=args.batch_size, precision=args.precision)


def _fp32_schedule_note(recipe, usual) -> str | None:
    """Why ``recipe`` is not the ``usual`` one, where this CPU's fp32 schedule changed it (also when --epochs set the
    epochs: the whitened first conv then still differs)."""
    epochs, whitened = recipe.epochs != usual.epochs, recipe.whiten_first_conv != usual.whiten_first_conv
    if not (epochs or whitened):
        return None
    if not epochs:
        return "a whitened first conv, as its fp32 schedule has: this CPU trains in fp32 (no native bf16)"
    return (f"{recipe.epochs} epochs{' and a whitened first conv' if whitened else ''} instead of {usual.epochs}: "
            "this CPU trains in fp32 (no native bf16), slower; the fp32 schedules keep the zoo within 20 minutes "
            "on 2 cores (--epochs overrides the epochs)")


def _load_what_training_loads() -> None:
    """A process's first torch.optim optimizer imports torch._dynamo and triton (1.6 s): loaded before any net, where
    a Ctrl-C ends the process cleanly (see training.starting)."""
    with starting.ended_by_ctrl_c():
        torch.optim.SGD([torch.zeros(1, requires_grad=True)])


def train_one(name: str, data, args, out_dir: Path, device: torch.device) -> dict:
    recipe = _recipe(name, args, _fp32_cpu(args, device))
    if recipe.batch_size > len(data.train):  # every epoch is then one step on all of them: the card must say so
        print(f"{name}: batch {recipe.batch_size} is more than the {len(data.train)} training images; "
              f"batch {len(data.train)}", flush=True)
        recipe = replace(recipe, batch_size=len(data.train))
    torch.manual_seed(args.seed)  # the initial weights too: --seed alone must reproduce a run
    model = convhub.create(name)
    precision = engine.resolve_precision(device, recipe.precision)
    where = f"on {device}" + (f" in {precision}" if recipe.precision == "auto" else "")  # else describe() says it
    print(f"{name}: {model.num_params:,} params, {recipe.describe()}, {where}", flush=True)
    note = _fp32_schedule_note(recipe, _recipe(name, args, fp32_cpu=False))
    if note:
        print(f"{name}: {note}", flush=True)
    if precision == "bf16" and not engine.bf16_supported(device):
        print(f"{name}: this {device.type} has no native bf16 (AVX512-BF16 or AMX on a CPU): bf16 is emulated, "
              "slower than fp32 (--precision auto picks fp32 here)", flush=True)
    result = engine.train(model, data, recipe, device=device, seed=args.seed, progress=not args.quiet)
    model.cpu()
    train_metrics = engine.metrics(model, data.train, convhub.CIFAR2_CLASSES)
    val_metrics = engine.metrics(model, data.val, convhub.CIFAR2_CLASSES, result.val_predictions)
    record = artifacts.training_record(
        model, data, recipe, result, train_metrics, val_metrics, seed=args.seed, device=device, precision=precision,
        dataset_id=args.dataset_id or data.dataset_id)
    artifacts.save(model, out_dir, record, overwrite=getattr(args, "overwrite", False))
    print(f"{name}: val {record['val_accuracy']:.4f}, train {record['train_accuracy']:.4f}, "
          f"{record['seconds']:.0f} s -> {out_dir}", flush=True)
    return record


def _load_data(args):
    if getattr(args, "zoo_data", None):
        data, how = load_decoded(args.zoo_data), ", as the zoo decoded it"
    else:
        data, how = load_cifar2(args.data, val_fraction=args.val_fraction, seed=args.seed,
                                revision=args.data_revision), ""
    skipped = f", {data.train.skipped} unreadable file(s) skipped" if data.train.skipped else ""
    print(f"data: {data.source}: {len(data.train)} train, {len(data.val)} val ({data.val_source}){skipped}{how}",
          flush=True)
    return data


PUSH_LATER = "train without --push now, and push the saved folders with `python -m training push` later"


def cmd_train(args) -> int:
    allocator.reuse_freed_memory()
    out = artifacts.check_model_out(args.out, overwrite=args.overwrite)
    device = engine.pick_device(args.device)
    if args.push:
        publish.check_repo_id(args.push, "--push")
        token = publish.check_can_push(args.token, (args.push.split("/")[0],), later=PUSH_LATER)
        if args.private:
            publish.check_stays_private(token, [(args.push, "model")])
    data = _load_data(args)
    _load_what_training_loads()
    record = train_one(args.model, data, args, out, device)
    if args.push:
        print(f"pushed: {publish.push(args.out, args.push, private=args.private or None, token=args.token)}")
    return 0 if record else 1


def cmd_zoo(args) -> int:
    names = [zoo_name(n) for n in args.models.split(",") if n.strip()]
    if not names:  # it wrote an empty report over the zoo's, then failed drawing it
        raise ConvHubError(f"--models names no net; the zoo has: {', '.join(convhub.ZOO)}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:  # each copy trained, and the second save found the first in its place
        raise ConvHubError(f"--models names {', '.join(repeated)} more than once")
    allocator.reuse_freed_memory()  # for nets trained here (--jobs 1); the nets side by side are `train`
    out = artifacts.check_zoo_out(args.out, names, overwrite=args.overwrite)
    device = engine.pick_device(args.device)
    if args.push:
        publish.check_repo_id(convhub.pretrained_repo(names[0], args.push), "--push")
        token = publish.check_can_push(args.token, (args.push,), later=PUSH_LATER)
        if args.private:
            publish.check_stays_private(token, [(convhub.pretrained_repo(name, args.push), "model") for name in names])
    # Nets trained before in --out stay in the table (a subset's zoo wrote a table of its nets alone over the whole
    # zoo's, which the Space's Compare tab reads); their records are read now, so a bad one stops the zoo untrained.
    earlier = {name: record for name in convhub.ZOO if name not in names and (out / name).is_dir()
               if (record := artifacts.read_record(out / name))}
    data = _load_data(args)  # in this process too: bad data is one error before any net starts
    started = time.perf_counter()
    jobs = parallel.resolve_jobs(args.jobs, device, len(names))
    if jobs == 1:
        _load_what_training_loads()
        records = [train_one(name, data, args, out / name, device) for name in names]
    else:
        records = _zoo_side_by_side(names, data, args, out, device, jobs)
    paths = report.write_report(report.in_zoo_order(records + list(earlier.values())), out)
    print(f"\nzoo done in {time.perf_counter() - started:.0f} s\n")
    if earlier:
        print(f"The table keeps {len(earlier)} net(s) trained before in {out}: "
              f"{', '.join(earlier)}\n")
    if (out / "translation.json").is_file():  # the Translation tab's curves, of the nets as they were
        # on the nets' own validation split: the same data, seed and fraction
        split = {"--seed": args.seed, "--val-fraction": args.val_fraction, "--data-revision": args.data_revision}
        again = ["python", "-m", "training", "translation", "--models", str(out), "--data", str(args.data),
                 *(str(part) for flag, value in split.items() if value is not None for part in (flag, value))]
        print(f"{out / 'translation.json'} holds the curves of the nets before this run: `{shlex.join(again)}` "
              "measures them again\n")
    print(paths["markdown"].read_text())
    print(f"results: {paths['json']}, {paths['markdown']}, plot: {paths['plot']}")
    failed = []
    for name in names if args.push else []:
        try:
            repo = convhub.pretrained_repo(name, args.push)
            print(f"pushed {name}: {publish.push(out / name, repo, private=args.private or None, token=args.token)}")
        except ConvHubError as error:
            failed.append(name)
            print(f"error: {error}", file=sys.stderr)
    for name in earlier if args.push else []:  # a zoo stopped halfway had pushed none of them
        again = ["python", "-m", "training", "push", "--from", str(out / name), "--repo",
                 convhub.pretrained_repo(name, args.push), *["--private"] * args.private]
        print(f"{name} was trained before this run, which did not push it: `{shlex.join(again)}` pushes it")
    return 1 if failed else 0


def _zoo_side_by_side(names: list[str], data, args, out: Path, device: torch.device, jobs: int) -> list[dict]:
    threads = args.threads or max(1, parallel.cpu_cores() // jobs)
    fp32_cpu = _fp32_cpu(args, device)
    order = parallel.longest_first({name: _recipe(name, args, fp32_cpu) for name in names})
    print(f"training {len(names)} nets {jobs} at a time, {threads} torch thread(s) each, longest first: "
          f"{', '.join(order)}", flush=True)
    # --option=value: a value starting with "-" (a --data path) is still read as the option's value
    options = {"--data": args.data, "--data-revision": args.data_revision, "--dataset-id": args.dataset_id,
               "--recipe": args.recipe, "--epochs": args.epochs, "--lr": args.lr, "--batch-size": args.batch_size,
               "--seed": args.seed, "--val-fraction": args.val_fraction, "--device": device,
               "--precision": args.precision}
    passed = [f"{flag}={value}" for flag, value in options.items() if value is not None]
    passed += ["--quiet"] * args.quiet + ["--overwrite"] * args.overwrite
    copy, passed = _hand_over(data, passed)
    try:
        failed = parallel.train_side_by_side(order, out, passed, jobs=jobs, threads=threads,
                                             pass_fds=(copy.fileno(),) if copy else ())
    finally:
        if copy:
            copy.close()
    if failed:
        raise ConvHubError(f"{', '.join(f'{n} ({failed[n]})' for n in names if n in failed)} failed (see the lines "
                           "above); nets still waiting were not started, and the nets that finished are saved")
    return [artifacts.read_record(out / name) for name in names]


def _hand_over(data, passed: list[str]) -> tuple[BinaryIO | None, list[str]]:
    """Each net reads the data as decoded here (3.2 s less a net for CIFAR-2's JPEGs); returns the file the nets
    inherit and their options. The file has no name: the system frees it when the last process holding it ends, even
    a zoo killed outright (a named temp folder outlived a SIGKILL). Linux only: elsewhere /dev/fd/N is not the file
    opened anew. Where it cannot be written (a full disk, a TMPDIR that is not there) each net decodes --data itself."""
    if not sys.platform.startswith("linux"):
        return None, passed
    copy = None
    try:
        copy = tempfile.TemporaryFile()
        save_decoded(data, copy)
    except (OSError, SafetensorError) as error:
        print(f"each net decodes the data itself: its decoded copy could not be written ({one_line(error)[:200]})",
              file=sys.stderr, flush=True)
        if copy:
            copy.close()
        return None, passed
    return copy, [*passed, f"--zoo-data=/dev/fd/{copy.fileno()}"]


def cmd_evaluate(args) -> int:
    model = convhub.load(args.model, revision=args.revision)
    split, source = load_eval_split(args.data)
    if not len(split):
        raise ConvHubError(f"{source} holds no airplane or bird image to evaluate on")
    split = in_model_order(split, list(model.class_names))
    result = {"model": str(args.model), "data": source, "skipped": split.skipped,
              **engine.metrics(model, split, model.class_names)}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    names = list(model.class_names)
    print(f"{args.model} on {source}: {result['n_images']} images"
          + (f" ({split.skipped} unreadable skipped)" if split.skipped else ""))
    print(f"accuracy: {result['accuracy']:.4f}")
    for name, acc in result["per_class_accuracy"].items():
        print(f"  {name:>10}: " + ("no images" if acc is None else f"{acc:.4f}"))
    width = max(len(n) for n in names) + 2
    print("confusion matrix (rows: true, columns: predicted)")
    print(" " * width + "".join(f"{n:>{width}}" for n in names))
    for name, row in zip(names, result["confusion_matrix"]):
        print(f"{name:>{width}}" + "".join(f"{v:>{width}}" for v in row))
    return 0


def in_model_order(split, class_names: list[str]):
    """The split's labels (CIFAR-2's: 0 airplane, 1 bird) as the indices of the same names among the model's
    outputs: a config may list them in either order, and another model's names are not these data's."""
    if sorted(class_names) != sorted(CIFAR2_CLASSES):
        raise ConvHubError(f"the model's classes are {', '.join(map(repr, class_names))}; the evaluation data's "
                           f"are {', '.join(CIFAR2_CLASSES)}: there is nothing to compare")
    order = torch.tensor([class_names.index(name) for name in CIFAR2_CLASSES])
    return replace(split, labels=order[split.labels])


def cmd_report(args) -> int:
    out = Path(args.out)
    if not out.is_dir():
        raise ConvHubError(f"no such folder: {out}")
    artifacts.refuse_linked_folders(out)
    records = [r for d in artifacts.check_report_folder(out) if (r := artifacts.read_record(d))]
    if not records:
        raise ConvHubError(f"no trained models in {out} (folders whose README.md carries training metrics)")
    paths = report.write_report(report.in_zoo_order(records), out)
    print(paths["markdown"].read_text())
    print(f"results: {paths['json']}, {paths['markdown']}, plot: {paths['plot']}")
    return 0


def cmd_translation(args) -> int:
    from . import translation

    folder = Path(args.models)
    if folder.is_dir():
        artifacts.refuse_linked_folders(folder)
        if (folder / translation.FILE).is_dir():  # found before the nets are evaluated, not after
            raise ConvHubError(f"{folder / translation.FILE} is a folder: the curves are written to that name")
    models = {name: convhub.load(saved) for name, saved in saved_nets(folder).items()}
    if not models:
        raise ConvHubError(f"no saved nets in {folder} (folders named after the zoo: {', '.join(convhub.ZOO)})")
    data = _load_data(args)
    _check_validated_on(models, data)
    path = translation.write(models, data.val, data.val_source, folder)
    curves = json.loads(path.read_text())["accuracy"]
    shifts = translation.SHIFTS
    print(f"{'model / shift':>16} " + " ".join(f"{s:>+5d}" for s in shifts))  # not 'net': a net is called that
    for name, curve in curves.items():
        print(f"{name:>16} " + " ".join(f"{a:5.3f}" for a in curve))
    print(f"-> {path}")
    return 0


def _check_validated_on(models: dict, data) -> None:
    """The Translation tab's curves sit beside the nets' validation accuracies: measured on other images (a folder of
    8, another seed), they replaced the curves of the 1,000 the cards report on. Told by the count and the split each
    card records (not the folder's name, which a copy of the same images need not share), as convhub.load read it; a
    card that records neither (an untrained save, a card written by hand) makes no claim."""
    given = (len(data.val), data.val_source)
    claims: dict[tuple, list[str]] = {}
    for name, model in models.items():
        record = (model.loaded_record or ({},))[0]
        claim = record.get("n_val"), record.get("validation")
        if any(value is not None and value != ours for value, ours in zip(claim, given)):
            claims.setdefault(claim, []).append(name)
    if claims:
        cards = "; ".join(f"{', '.join(names)} on {n_val} ({validation})" for (n_val, validation), names in
                          claims.items())
        raise ConvHubError(f"the nets' cards report on other validation images than --data gives ({given[0]}: "
                           f"{given[1]}): {cards}. Pass the data the nets were trained on, with their --seed and "
                           "--val-fraction; nothing was written")


def cmd_publish(args) -> int:
    plan = publish.plan(args.namespace, source=args.source, only=args.only, revision=args.revision,
                        private=args.private or None, space=args.space, dataset_id=args.dataset_id)
    if args.dry_run is not None:
        out = publish.dry_run(plan, args.dry_run, overwrite=args.overwrite)
        print(f"dry run: wrote {len(plan.repos)} model repo(s) and the Space {plan.space_id} into {out} "
              f"(see {out / publish.MANIFEST}); nothing was sent")
        return 0
    pushed = publish.publish(plan, token=args.token)
    print(f"published {len(pushed)} repos; the Space: {shown_endpoint()}/spaces/{plan.space_id}")
    return 0


def cmd_push(args) -> int:
    url = publish.push(args.source, args.repo, revision=args.revision, private=args.private or None, token=args.token,
                       dataset_id=args.dataset_id)
    print(f"pushed {args.source} to {args.repo}: {url}")
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    library = logging.getLogger("huggingface_hub")  # its own handler printed each line, and ours again
    for handler in list(library.handlers):
        library.removeHandler(handler)
    for client in ("httpx", "httpx2"):  # a line per HTTP request, the whole URL in it (HF_ENDPOINT's password too)
        logging.getLogger(client).setLevel(logging.WARNING)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # argparse answers a command's typo (--epochz) with the top-level usage, which lists only commands
        parser.commands.choices[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    command = {"train": cmd_train, "zoo": cmd_zoo, "evaluate": cmd_evaluate, "report": cmd_report,
               "translation": cmd_translation, "publish": cmd_publish, "push": cmd_push}[args.command]
    net_of_a_zoo = False
    try:
        net_of_a_zoo = parallel.stop_with_zoo()
        if getattr(args, "threads", None):
            torch.set_num_threads(args.threads)
        return command(args)
    except (ConvHubError, FloatingPointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        if error.filename is None:  # not a path of the user's: a bug or the network, whose traceback says more
            raise
        # A path the system refuses (a name too long, a folder not readable) where no check gave it a message
        # of its own; the commands check their outputs before training, so nothing trained is lost.
        print(f"error: {shown(str(error.filename), 200)}: {error.strerror or error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: one line, the shell's exit code for SIGINT; saves are atomic, so
        # a model is either saved whole or not at all
        if net_of_a_zoo:  # the zoo repeats its Ctrl-C until we have ended
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        in_progress = "the nets in progress were" if args.command == "zoo" else "the one in progress was"
        print(f"\ninterrupted: {args.command} stopped; models saved before this point are kept, {in_progress} not "
              "saved", file=sys.stderr)
        return 130
