"""A stdlib-only downloader for data files: resumable (HTTP Range), verified, atomic and safe for concurrent
fetchers.

download(url, dest, sha256=..., md5=..., size=...):
* bytes go to `<dest>.part` (a fixed name, so a later call, in any process, resumes it): when it exists, the request
  asks for `Range: bytes=<its size>-`; a 206 answer whose Content-Range starts there is appended, any other answer
  starts over. A dropped connection is retried (resuming) up to `retries` times, then the error propagates with
  the partial file kept for the next call;
* the complete file is checked against every hash given (sha256 and/or md5) and the size; a mismatch deletes the
  partial file and raises DataHashMismatch (one line): nothing is kept, since resuming a corrupt prefix would fail
  again;
* the verified file is moved into place with os.replace, so `dest` is either absent or complete and verified;
* an exclusive lock (fcntl.flock on `<folder>/.qbench-locks/<name>.lock`) serializes fetchers of the same file: a
  second fetcher waits, then finds the file in place and returns without downloading.
"""

from __future__ import annotations

import fcntl
import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import contextmanager

from qbench.errors import ConfigError, InfraError, WeightsHashMismatch

__all__ = ["DataHashMismatch", "DownloadError", "file_digest", "locked", "download"]

CHUNK = 1 << 20
LOCK_FOLDER = ".qbench-locks"
USER_AGENT = "qbench-data"
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class DataHashMismatch(WeightsHashMismatch):
    """A downloaded file whose hash or size is not the manifest's; nothing was kept."""


class DownloadError(InfraError):
    """A file that could not be downloaded (network, HTTP status); a partial file may be kept for resuming."""


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def file_digest(path: str, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def locked(folder: str, name: str):
    """An exclusive lock named `name` among the locks of `folder` (held until the block ends)."""
    locks = os.path.join(folder, LOCK_FOLDER)
    os.makedirs(locks, exist_ok=True)
    with open(os.path.join(locks, name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _resumed(response, offset: int) -> bool:
    """Does this answer continue the partial file at `offset`?"""
    if offset == 0 or response.status != 206:
        return False
    match = _CONTENT_RANGE.fullmatch((response.headers.get("Content-Range") or "").strip())
    return bool(match) and int(match.group(1)) == offset


def _fetch_once(url: str, part: str, timeout: float, progress: Callable[[int, int | None], None] | None) -> None:
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: the partial file may be complete; verify it
            return
        raise
    with response:
        resumed = _resumed(response, offset)
        if not resumed:
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        with open(part, "ab" if resumed else "wb") as handle:
            done = offset
            while True:
                block = response.read(CHUNK)
                if not block:
                    break
                handle.write(block)
                done += len(block)
                if progress is not None:
                    progress(done, total)
            handle.flush()
            os.fsync(handle.fileno())
        if total is not None and done < total:
            raise http.client.IncompleteRead(b"", total - done)


def _verify(part: str, url: str, sha256: str | None, md5: str | None, size: int | None) -> None:
    problems = []
    actual_size = os.path.getsize(part)
    if size is not None and actual_size != size:
        problems.append(f"size {actual_size} bytes, expected {size}")
    for algorithm, expected in (("sha256", sha256), ("md5", md5)):
        if expected and not problems:
            actual = file_digest(part, algorithm)
            if actual != expected.lower():
                problems.append(f"{algorithm} {actual}, expected {expected}")
    if problems:
        os.remove(part)
        raise DataHashMismatch(f"{url}: {'; '.join(problems)}; the download was deleted, nothing was kept")


def download(url: str, dest: str, *, sha256: str | None = None, md5: str | None = None, size: int | None = None,
             retries: int = 3, timeout: float = 60.0,
             progress: Callable[[int, int | None], None] | None = None) -> bool:
    """Bring `url` to `dest` (see the module doc); True when it was downloaded, False when `dest` was already
    there (it is then trusted: it was verified when it was moved into place)."""
    if not (sha256 or md5):
        raise ConfigError(f"refusing to download {url} without a sha256 or md5 to check it against")
    folder = os.path.dirname(os.path.abspath(dest))
    os.makedirs(folder, exist_ok=True)
    part = dest + ".part"
    with locked(folder, os.path.basename(dest)):
        if os.path.isfile(dest):
            return False
        attempt = 0
        while True:
            try:
                _fetch_once(url, part, timeout, progress)
                break
            except (http.client.IncompleteRead, ConnectionError, TimeoutError) as exc:
                attempt += 1
                if attempt > retries:
                    raise DownloadError(f"downloading {url} was interrupted ({_one_line(exc)}); "
                                        f"{os.path.getsize(part) if os.path.exists(part) else 0} bytes kept in "
                                        f"{part}: run it again to resume") from None
            except (urllib.error.URLError, OSError, ValueError) as exc:
                raise DownloadError(f"cannot download {url}: {_one_line(exc)}") from None
        _verify(part, url, sha256, md5, size)
        os.replace(part, dest)
    return True
