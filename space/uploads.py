"""Which files a request may name, and where the Space writes its own.

Gradio checks that an uploaded file lies in its upload cache only when the request marks it as a file (``meta``):
a bare ``{"path": "/any/server/file"}`` reaches the component as it is. So every image input goes through
``checked_upload``: only files in Gradio's upload cache or among our examples, and only regular files, with one
message for everything else, so that an answer never tells whether a server path exists.
"""

from __future__ import annotations

import atexit
import hashlib
import io
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from pathlib import Path

from convhub.errors import ConvHubError
from PIL import Image

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
NOT_AN_UPLOAD = ("this file was not uploaded to the Space: send the image itself (in gradio_client, "
                 "handle_file(path)); server paths and URLs are not accepted")


MAX_UPLOAD_BYTES = 2**40  # 1 TiB: far above any image, and Gradio's page config must still hold the figure


def size_in_bytes(size: str) -> int:
    """'10mb' -> 10485760, as Gradio reads max_file_size (units b, kb, mb, gb, of 1024; spaces only, as Gradio
    strips them); ValueError, saying what it must be, for anything else, no bytes at all or over 1 TiB."""
    match = re.fullmatch(r" *(\d{1,13}) *([kmg]?b) *", size.lower())
    number = int(match[1]) * 1024 ** {"b": 0, "kb": 1, "mb": 2, "gb": 3}[match[2]] if match else 0
    if not 0 < number <= MAX_UPLOAD_BYTES:
        raise ValueError(f"a size such as 10mb (a whole number, then b, kb, mb or gb; at most 1024gb), not {size!r}")
    return number


def disk_bytes(info: os.stat_result) -> int:
    """What a file or folder costs the disk: at least a block, even empty (its inode: a million empty files would
    exhaust them), its blocks, or its size if larger (a sparse file may take fewer blocks)."""
    return max(info.st_size, info.st_blocks * 512, 4096)


def sweep(folder: Path, max_bytes: int, min_age_s: float, now: float | None = None, keep=frozenset(),
          deleted: list | None = None, target_bytes: int | None = None) -> int:
    """If ``folder`` takes more than max_bytes on disk, delete its oldest files (older than min_age_s, so none that
    a request is reading) until it takes at most target_bytes (default max_bytes), never those in ``keep`` (paths:
    the page's own files); then the folders left empty (each upload has one of its own). Returns the bytes left,
    and adds the files' paths to ``deleted``. Gradio's own cache cleaning goes by age only."""
    now = time.time() if now is None else now
    keep = {os.path.abspath(path) for path in keep}
    files, folders, total = [], [], 0
    for root, _, names in os.walk(folder, topdown=False):  # folders after what they hold
        for name in names:
            path = os.path.join(root, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode) and os.path.abspath(path) not in keep:
                size = disk_bytes(info)
                files.append((info.st_mtime, size, path))
                total += size
        if root != str(folder):
            try:
                info = os.lstat(root)
            except OSError:
                continue
            size = disk_bytes(info)
            folders.append((info.st_mtime, size, root))
            total += size
    target = max_bytes if target_bytes is None or total <= max_bytes else target_bytes
    for mtime, size, path in sorted(files):
        if total <= target:
            break
        if now - mtime >= min_age_s:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            total -= size
            if deleted is not None:
                deleted.append(path)
    for mtime, size, path in folders:
        if now - mtime >= min_age_s:  # as it was before its files went: no upload is writing there
            try:
                os.rmdir(path)  # only if empty
            except OSError:
                continue
            total -= size
    return total


class UntrustedFileError(ConvHubError):
    """A request named a file that is not an upload of this Space."""


def upload_folder() -> Path:
    """Gradio's upload cache (GRADIO_TEMP_DIR, or <tmp>/gradio), as Gradio itself computes it."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()


def checked_upload(path: str | os.PathLike) -> Path:
    """``path`` itself if it is a regular file in Gradio's upload cache or in our examples; else UntrustedFileError.

    Resolved first, so neither ``..`` nor a symbolic link leads out of those folders. The message is the same for
    every refusal: missing files, FIFOs, folders, URLs and other people's files all read alike.
    """
    try:
        resolved = Path(os.fspath(path)).resolve(strict=True)
        inside = any(resolved.is_relative_to(root) for root in (upload_folder(), EXAMPLES_DIR))
        if inside and stat.S_ISREG(resolved.stat().st_mode):
            return resolved
    except (OSError, TypeError, ValueError, RuntimeError):  # missing, unreadable, a loop of links, a NUL byte...
        pass
    raise UntrustedFileError(NOT_AN_UPLOAD)


class ImageStore:
    """PNG files the Space hands to Gradio, named by their content and written atomically.

    Gradio rewrites array outputs into one content-hashed file in place, so concurrent identical requests could read
    it half-written; files we hand over are copied atomically and reused instead. The folder is private to this
    process, bounded by age and total size (pruned as it grows), and removed when the process exits.
    """

    def __init__(self, max_age_s: float = 600.0, max_bytes: int = 64 * 2**20):
        self.max_age_s, self.max_bytes = max_age_s, max_bytes
        self.folder: Path | None = None
        self._lock = threading.Lock()
        self._bytes = 0
        self._pruned_at = time.monotonic()

    def open(self) -> Path:
        """The folder, created on first use (the app creates it at start-up)."""
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="convhub-space-"))
            atexit.register(self.close)
        return self.folder

    def save(self, pixels) -> str:
        data = io.BytesIO()
        Image.fromarray(pixels).save(data, format="PNG")
        with self._lock:
            folder = self.open()
            path = folder / f"{hashlib.sha256(data.getvalue()).hexdigest()[:32]}.png"
            if path.exists():
                os.utime(path)  # reused: young again
            else:
                with tempfile.NamedTemporaryFile(dir=folder, suffix=".tmp", delete=False) as tmp:
                    tmp.write(data.getvalue())
                os.replace(tmp.name, path)
                self._bytes += len(data.getvalue())
            if self._bytes > self.max_bytes or time.monotonic() - self._pruned_at > self.max_age_s / 2:
                self._bytes = self.prune()
                self._pruned_at = time.monotonic()
        return str(path)

    def prune(self, now: float | None = None) -> int:
        """Delete files older than max_age_s, then the oldest until the folder is at most half of max_bytes
        (so pruning is rare); returns the bytes left."""
        if self.folder is None:
            return 0
        now = time.time() if now is None else now
        files = []
        for path in self.folder.glob("*.png"):
            try:
                info = path.stat()
            except OSError:
                continue
            if now - info.st_mtime > self.max_age_s:
                path.unlink(missing_ok=True)
            else:
                files.append((info.st_mtime, info.st_size, path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.max_bytes // 2:
                break
            path.unlink(missing_ok=True)
            total -= size
        return total

    def close(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
            self._bytes = 0
