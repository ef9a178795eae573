"""The Space repo exactly as it is uploaded: everything Spaces needs to run it, checked before it leaves.

`space/` of this checkout, plus the convhub package (Spaces install only requirements.txt, and convhub is not on
PyPI), plus the trained weights as the offline fallback, plus `convhub_space.json`, which bakes in the namespace and
revision the Space loads its nets from (no Space variable to set by hand), and a README whose front matter names the
model repos just pushed and the gradio version pinned in requirements.txt.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from convhub.errors import ConvHubError
from huggingface_hub import SpaceCard

from .artifacts import ZOO_REPORT_FILES, copy_regular_file

CHECKOUT = Path(__file__).resolve().parents[1]
SPACE_SOURCE = CHECKOUT / "space"
CONVHUB_SOURCE = CHECKOUT / "convhub"
SPACE_CONFIG = "convhub_space.json"  # read by space/zoo_loader.py
MODEL_FILES = ("config.json", "model.safetensors", "README.md")
EXAMPLE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
COLORS = ("red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray")
MAX_SHORT_DESCRIPTION = 60  # the Hub refuses longer ones


class SpaceBundleError(ConvHubError):
    """The Space folder could not be built, or its README would be refused by the Hub."""


def pinned_version(requirements: Path, package: str) -> str:
    """The exact version `package==X` (extras allowed) pins in a requirements file."""
    for line in requirements.read_text().splitlines():
        match = re.fullmatch(rf"\s*{re.escape(package)}(\[[\w,\s-]+\])?==([\w.]+)\s*(#.*)?", line)
        if match:
            return match[2]
    raise SpaceBundleError(f"{requirements} does not pin {package}==<version>")


def check_front_matter(card: SpaceCard, space_folder: Path) -> None:
    """What the Hub checks when a Space README is pushed, and what Spaces need to start the app."""
    data = card.data.to_dict()
    problems = []
    if data.get("sdk") != "gradio":
        problems.append(f"sdk must be 'gradio', not {data.get('sdk')!r}")
    pinned = pinned_version(space_folder / "requirements.txt", "gradio")
    if str(data.get("sdk_version")) != pinned:
        problems.append(
            f"sdk_version {data.get('sdk_version')!r} differs from the gradio=={pinned} in requirements.txt")
    description = data.get("short_description", "")
    if not isinstance(description, str) or not 0 < len(description) <= MAX_SHORT_DESCRIPTION:
        problems.append(f"short_description must have 1 to {MAX_SHORT_DESCRIPTION} characters "
                        f"(it has {len(description)}): {description!r}")
    for key in ("colorFrom", "colorTo"):
        if data.get(key) not in COLORS:
            problems.append(f"{key} must be one of {', '.join(COLORS)}, not {data.get(key)!r}")
    if not (space_folder / str(data.get("app_file", ""))).is_file():
        problems.append(f"app_file {data.get('app_file')!r} is not in the Space folder")
    if not isinstance(data.get("title"), str) or not data["title"].strip():
        problems.append("title is missing")
    for repo_id in data.get("models") or []:
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", str(repo_id)):
            problems.append(f"models lists {repo_id!r}, not a repo id")
    if problems:
        raise SpaceBundleError("the Space README would be refused: " + "; ".join(problems))


def build_space(out: Path, *, namespace: str, revision: str, model_folders: dict[str, Path],
                model_repos: dict[str, str], report_folder: Path | None = None) -> Path:
    """Write the Space into the empty folder ``out``: app, convhub, examples, bundled weights, README, config.

    ``model_folders`` maps zoo names to staged model folders (their cards already name their repos) and
    ``model_repos`` to the repos they are pushed to.
    """
    if not (SPACE_SOURCE / "app.py").is_file() or not (CONVHUB_SOURCE / "__init__.py").is_file():
        raise SpaceBundleError(f"publishing the Space needs a ConvHub checkout (no space/app.py under {CHECKOUT})")
    out.mkdir(parents=True, exist_ok=True)
    app_files = sorted(SPACE_SOURCE.glob("*.py")) + sorted(SPACE_SOURCE.glob("*.css"))
    for source in app_files + [SPACE_SOURCE / "requirements.txt"]:
        copy_regular_file(source, out / source.name)
    # The package's modules and nothing else: a .env, an editor's backup or a link to a key beside them would go
    # public with the Space (convhub is one flat package; the deploy tests import the bundle as Spaces will).
    (out / "convhub").mkdir()
    for module in sorted(CONVHUB_SOURCE.glob("*.py")):
        copy_regular_file(module, out / "convhub" / module.name)
    (out / "examples").mkdir()
    for example in sorted((SPACE_SOURCE / "examples").iterdir()):
        if example.suffix.lower() in EXAMPLE_SUFFIXES:
            copy_regular_file(example, out / "examples" / example.name)
    for name, folder in model_folders.items():
        (out / "models" / name).mkdir(parents=True)
        for file in MODEL_FILES:
            copy_regular_file(folder / file, out / "models" / name / file)
    for file in ZOO_REPORT_FILES:
        if report_folder is not None and (report_folder / file).is_file():
            copy_regular_file(report_folder / file, out / "models" / file)
    (out / SPACE_CONFIG).write_text(json.dumps({"namespace": namespace, "revision": revision,
                                                "models": model_repos}, indent=2) + "\n")
    card = SpaceCard.load(SPACE_SOURCE / "README.md")
    card.data.models = list(model_repos.values())
    card.data.sdk_version = pinned_version(out / "requirements.txt", "gradio")
    check_front_matter(card, out)
    card.save(out / "README.md")
    return out
