"""Virtual media images for the `libvirt` backend: where the CD-ROM's file comes from.

A BMC is given an image URL (Redfish InsertMedia: http, https) and fetches it itself; QEMU
here has no network block drivers (Debian's qemu-block-extra is optional), so the backend
fetches an http(s) image into `image_dir` on the hypervisor host and puts that file in the
CD-ROM. A local path or file:// URL is used as it is. Only a local hypervisor can be given a
fetched file this way: for a remote URI, give a path on that host.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlsplit

from backends.base import BackendError, BackendRefused

log = logging.getLogger(__name__)

#: the largest image fetched (a DVD ISO is ~4.7 GB)
MAX_IMAGE_BYTES = 16 * 1024**3
CHUNK = 1024 * 1024


def local_path(image: str) -> str | None:
    """The local path a path or file:// URL names; None for a URL to fetch (http, https)."""
    parts = urlsplit(image)
    if parts.scheme in ("http", "https"):
        return None
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise BackendRefused(f"virtual media {_redacted(image)!r}: a file:// URL must "
                                 "name a local file")
        return unquote(parts.path)
    if parts.scheme == "" and image.startswith("/"):
        return image
    raise BackendRefused(f"virtual media {_redacted(image)!r}: the libvirt backend takes an "
                         "http(s) URL, or a local path or file:// URL on the hypervisor host")


def fetch(url: str, directory: Path, name: str, timeout: float) -> str:
    """Download `url` into `directory` (as `name`-<hash>.iso, replacing an older copy);
    its path. BackendRefused if the server says no such image, BackendError otherwise."""
    directory.mkdir(parents=True, exist_ok=True)
    # the hypervisor's QEMU user must reach the file (libvirt labels the file, not the path)
    with contextlib.suppress(OSError):
        directory.chmod(0o755)
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    target = directory / f"{name}-{digest}.iso"
    shown = _redacted(url)
    request = urllib.request.Request(url, headers={"User-Agent": "bmc-emulator"})
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as resp:
            size = 0
            while chunk := resp.read(CHUNK):
                size += len(chunk)
                if size > MAX_IMAGE_BYTES:
                    raise BackendRefused(f"virtual media {shown}: larger than "
                                         f"{MAX_IMAGE_BYTES // 1024**3} GiB")
                out.write(chunk)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)  # a VM still using the old copy keeps its open file
    except urllib.error.HTTPError as exc:
        raise BackendRefused(f"virtual media {shown}: the server answered {exc.code} "
                             f"{exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BackendError(f"virtual media {shown}: cannot fetch it: {reason}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    log.info("fetched virtual media %s into %s (%d bytes)", shown, target, size)
    _forget_older(directory, name, keep=target)
    return str(target)


def _forget_older(directory: Path, name: str, keep: Path) -> None:
    """Remove this node's other fetched images (a running VM keeps an open one readable)."""
    for old in directory.glob(f"{name}-*.iso"):
        if old != keep:
            with contextlib.suppress(OSError):
                old.unlink()


def _redacted(url: str) -> str:
    """`url` without a password (never logged or shown)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()

