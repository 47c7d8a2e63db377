"""Images for vision models: which `images` entries may be sent, and reading local files safely.

An entry is one of:

- an http(s) URL: sent as it is (the provider fetches it);
- a `data:image/...;base64,` URI, or raw bytes from a library caller: checked (base64 that
  decodes, an image by its magic bytes, at most `MAX_IMAGE_BYTES`) and sent as a data URI whose
  MIME type comes from those bytes;
- a local path. Rows of a dataset come from strangers, so a path is read only where the user
  allowed it (`LocalImages`; by default nowhere): a regular file inside the allowed folder once
  symlinks are resolved, never under /proc, /sys or /dev, at most `MAX_IMAGE_BYTES`, and an
  image by its magic bytes, which (not the extension) decide the MIME type sent. A relative
  path is relative to the allowed folder.

Any other scheme (`file:`, `ftp:` ...) is refused. Each refusal is an InputError saying which
entry, why, and how to fix it; the runner turns it into a bad row, before anything is sent.

No read blocks the event loop, for two reasons: `image_urls` reads in a worker thread
(asyncio.to_thread), and the checks bound that thread, which cannot be cancelled: a file that is
not regular (a FIFO, a device) is refused before it is opened and again by fstat after; the open
is O_NONBLOCK, so a FIFO swapped in between cannot block it; the size is checked before reading;
and at most the cap plus one byte is read.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

from hfbatch import defaults
from hfbatch.errors import InputError

__all__ = ["LocalAccess", "LocalImages", "MediaItem", "image_url", "image_urls", "sniff_image"]

#: An image: a path, raw bytes, an http(s) URL or a data URI; optionally with a name for messages.
MediaItem: TypeAlias = str | Path | bytes | tuple[str | Path | bytes, str | None]

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
# "BM" starts plenty of text; the DIB header size at offset 14 is what makes it a bitmap.
_BMP_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})
_MIB = 1024 * 1024
_READ_CHUNK = _MIB

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# O_PATH: a folder that may be crossed but not listed (mode --x) can still be walked.
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | _CLOEXEC | getattr(os, "O_PATH", 0)
_FILE_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | _NOFOLLOW | _CLOEXEC | getattr(os, "O_NOCTTY", 0)


def sniff_image(data: bytes) -> str | None:
    """The MIME type of an image from its first bytes (PNG, JPEG, GIF, WebP, BMP), or None."""
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:2] == b"BM" and int.from_bytes(data[14:18], "little") in _BMP_HEADER_SIZES:
        return "image/bmp"
    return None


@dataclass(frozen=True, slots=True)
class LocalImages:
    """Which local files image entries may name: those under `root`, and the `files` themselves.

    Both hold resolved paths (absolute, symlinks followed). The default allows none; build one
    with `under(folder)` (a dataset: --allow-local-images) or `named(paths)` (files a user typed).
    """

    root: Path | None = None
    files: frozenset[Path] = frozenset()

    @classmethod
    def under(cls, folder: str | os.PathLike[str]) -> LocalImages:
        """Allow regular files under `folder`; InputError if it is not a folder."""
        shown = os.fspath(folder)
        try:
            root = Path(folder).resolve(strict=True)
        except (OSError, RuntimeError, ValueError) as exc:
            raise InputError(f"allow_local_images {shown!r}: {_why(exc)}") from None
        if not root.is_dir():
            raise InputError(f"allow_local_images {shown!r} is not a folder")
        return cls(root=root)

    @classmethod
    def named(cls, paths: Iterable[str | os.PathLike[str]]) -> LocalImages:
        """Allow exactly these files (relative to the current folder); URLs among `paths` are skipped."""
        return cls(files=frozenset(Path(p).resolve() for p in paths if _scheme(os.fspath(p)) is None))

    def allows(self, real: Path) -> bool:
        """True if the resolved path `real` may be read."""
        return (self.root is not None and real.is_relative_to(self.root)) or real in self.files


#: Where local image files may come from: a LocalImages, a folder, or None for nowhere.
LocalAccess: TypeAlias = LocalImages | str | os.PathLike[str] | None


async def image_urls(items: Sequence[MediaItem], local: LocalAccess = None) -> list[str]:
    """The `image_url` URL of each item, in order; files and data URIs are read and checked off the loop.

    Raises InputError for the first item that may not be sent.
    """
    if all(isinstance(i, str) and _scheme(i) in ("http", "https") for i in items):
        return [str(i) for i in items]
    return await asyncio.to_thread(_urls, items, local)


def _urls(items: Sequence[MediaItem], local: LocalAccess) -> list[str]:
    return [image_url(item, local, index=i) for i, item in enumerate(items)]


def image_url(item: MediaItem, local: LocalAccess = None, *, index: int = 0) -> str:
    """The URL an `image_url` part carries for one image; InputError naming `images[index]` if refused.

    It may read a file: async code calls `image_urls`, which does so in a worker thread.
    """
    name: str | None = None
    if isinstance(item, tuple):
        item, name = item
    if isinstance(item, bytes):
        label = f"images[{index}]" + (f" {_show(name)}" if name else "")
        return _data_uri(item, label)
    text = os.fspath(item)
    label = f"images[{index}] {_show(text)}"
    if not text:
        raise InputError(f"{label} is empty; give a URL, a data:image URI or a path")
    if isinstance(item, str):
        scheme = _scheme(text)
        if scheme in ("http", "https"):
            return text
        if scheme == "data":
            return _check_data_uri(text, label)
        if scheme is not None:
            raise InputError(
                f"{label} is a {scheme}: URL; images are http(s) URLs, data:image URIs or local paths "
                "(for a file whose name has a colon, write ./ before it)"
            )
    return _data_uri(_read_local(text, label, _policy(local)), label)


def _scheme(text: str) -> str | None:
    """The URL scheme `text` starts with, lowercased, or None for a path (one letter is a drive, as C:)."""
    head, colon, _ = text.partition(":")
    if not colon or len(head) < 2 or not (head[0].isascii() and head[0].isalpha()):
        return None
    if all(c.isascii() and (c.isalnum() or c in "+-.") for c in head):
        return head.lower()
    return None


def _show(value: str) -> str:
    """A short quoted form of an entry for a reason (data URIs are long)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:56] + "...'"


def _why(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or type(exc).__name__


def _too_big(label: str, size: int) -> InputError:
    cap = defaults.MAX_IMAGE_BYTES
    return InputError(f"{label} is {size / _MIB:.1f} MiB, over the {cap / _MIB:g} MiB limit for an image")


def _image_type(data: bytes, label: str) -> str:
    """The MIME type of image bytes; InputError if they are too many or not an image."""
    if len(data) > defaults.MAX_IMAGE_BYTES:
        raise _too_big(label, len(data))
    mime = sniff_image(data)
    if mime is None:
        raise InputError(f"{label} is not an image: its first bytes are not PNG, JPEG, GIF, WebP or BMP")
    return mime


def _data_uri(data: bytes, label: str) -> str:
    return f"data:{_image_type(data, label)};base64,{base64.b64encode(data).decode('ascii')}"


def _check_data_uri(text: str, label: str) -> str:
    header, _, payload = text.partition(",")
    declared = header[5:].lower()
    if not (declared.startswith("image/") and declared.endswith(";base64")):
        raise InputError(f"{label} is a data URI but not data:image/...;base64,...; only base64 images are sent")
    # Four base64 characters per three bytes: refuse an oversized payload before decoding it.
    if len(payload) > 4 * -(-defaults.MAX_IMAGE_BYTES // 3):
        raise _too_big(label, len(payload) * 3 // 4)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{label} is a data URI whose base64 does not decode") from None
    mime = _image_type(data, label)
    # The bytes decide the MIME type; a URI that already says it is sent as the row gave it.
    return text if declared == f"{mime};base64" else f"data:{mime};base64,{payload}"


def _policy(local: LocalAccess) -> LocalImages | None:
    if local is None or isinstance(local, LocalImages):
        return local
    return _folder(os.fspath(local))


@functools.lru_cache(maxsize=8)
def _folder(folder: str) -> LocalImages:
    """`LocalImages.under(folder)`, resolved once per run rather than once per row."""
    return LocalImages.under(folder)


def _read_local(text: str, label: str, policy: LocalImages | None) -> bytes:
    if policy is None or (policy.root is None and not policy.files):
        raise InputError(
            f"{label} is a local path; local images are off: pass --allow-local-images DIR "
            "(allow_local_images in a job file) to allow files under DIR"
        )
    path = Path(text)
    if not path.is_absolute():
        path = (policy.root or Path.cwd()) / path
    try:
        real = Path(os.path.realpath(path))
    except (OSError, ValueError) as exc:
        raise InputError(f"{label} is not a usable path ({_why(exc)})") from None
    for tree in defaults.DENIED_IMAGE_TREES:
        if real.is_relative_to(tree):
            raise InputError(f"{label} is under {tree} (as {real}); files there are never sent")
    if not policy.allows(real):
        allowed = f"the folder local images may come from, {policy.root}" if policy.root else "the files allowed"
        raise InputError(f"{label} resolves to {real}, outside {allowed}; move or copy the image there")
    return _read_regular(real, label)


def _read_regular(real: Path, label: str) -> bytes:
    """Read the regular file at `real`, at most MAX_IMAGE_BYTES; never a FIFO, device or folder."""
    cap = defaults.MAX_IMAGE_BYTES
    try:
        mode = os.lstat(real).st_mode
        if not stat.S_ISREG(mode):
            raise InputError(f"{label} is {_kind(mode)}, not a regular file")
        fd = _open_no_symlinks(real)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise InputError(f"{label} is {_kind(st.st_mode)}, not a regular file")
            if st.st_size > cap:
                raise _too_big(label, st.st_size)
            data = _read_at_most(fd, cap + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        raise InputError(f"{label} cannot be read ({_why(exc)})") from None
    if len(data) > cap:
        raise _too_big(label, len(data))  # it grew while being read
    return data


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _open_no_symlinks(real: Path) -> int:
    """Open the file at `real` (absolute, symlinks resolved), following no symlink on the way.

    A symlink put in place of any part of the path since it was resolved makes the open fail
    (ELOOP) instead of leading outside the allowed folder.
    """
    if os.open not in os.supports_dir_fd:
        return os.open(real, _FILE_FLAGS)
    fd = os.open(real.anchor, _DIR_FLAGS)
    try:
        for part in real.parts[1:-1]:
            parent, fd = fd, os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(parent)
        return os.open(real.name, _FILE_FLAGS, dir_fd=fd)
    finally:
        os.close(fd)


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    left = limit
    while left > 0 and (chunk := os.read(fd, min(left, _READ_CHUNK))):
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
