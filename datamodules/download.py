"""Fetch, cache and verify dataset files, shared by every datamodule.

Files land in ``$LITZOO_DATA`` (default ``~/.cache/litzoo``) as ``<dataset>/<file>``. Before the
canonical URL is tried, each directory of ``$LITZOO_MIRROR`` (colon-separated) laid out the same
way is looked in; a corrupt copy in one mirror is reported and the next source tried. Every file
is checked by SHA-256 and written atomically with the permissions the umask gives, so an
interrupted copy never passes for a whole file, and the leftovers of a killed copy are removed.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import shutil
import socket
import tempfile
import time
import urllib.error
import urllib.request
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from registry import ConfigurationError

DATA_ENV = "LITZOO_DATA"
MIRROR_ENV = "LITZOO_MIRROR"
CHUNK = 1 << 20
# A temporary file of another machine (whose writer this one cannot see) is left alone until it
# has not been written to for this long; a live copy writes a chunk every few seconds.
ABANDONED_AFTER_S = 24 * 3600


class DataError(ConfigurationError):
    """A dataset file is missing, corrupt or cannot be fetched; the message says what to do."""


class ChecksumError(DataError):
    """A file exists but its SHA-256 is not the expected one; it is never used."""


class DataUnavailableError(DataError):
    """No cache, no mirror and no network had the file."""


class CorruptCopyWarning(UserWarning):
    """A mirror or URL served a corrupt copy, but a later source had a good one."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: where it lives canonically and what it must hash to."""

    dataset: str
    name: str
    url: str
    sha256: str

    @property
    def relpath(self) -> str:
        return f"{self.dataset}/{self.name}"


def data_root() -> Path:
    return Path(os.environ.get(DATA_ENV) or Path.home() / ".cache" / "litzoo").expanduser()


def mirror_dirs() -> list[Path]:
    return [Path(p).expanduser() for p in os.environ.get(MIRROR_ENV, "").split(":") if p]


def sha256sum(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _mismatch(what: object, actual: str, file: RemoteFile) -> str:
    return (
        f"{what} is corrupt or a different version: SHA-256 {actual}, expected {file.sha256} "
        f"for {file.relpath}."
    )


def umask() -> int:
    """The process's file-creation mask (reading it means setting it, so it is set back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(target: Path, suffix: str) -> Iterator[BinaryIO]:
    """A binary file to write `target` through: a temporary file beside it, renamed into place
    when the block ends without an error (and removed when it raises), with the permissions a
    plain ``open`` gives under the umask (``mkstemp``'s 0600 would hide it from other users).
    The temporary name ``.<name>.<host>.<pid>.<random><suffix>`` tells whose it is."""
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}.{socket.gethostname()}.{os.getpid()}."
    fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp_name, 0o666 & ~umask())
        os.replace(tmp_name, target)
    finally:
        Path(tmp_name).unlink(missing_ok=True)


def _abandoned(part: Path, target: Path) -> bool:
    """Whether `part`, a temporary file of `atomic_file` for `target`, has no live writer: its
    process on this machine is gone, or it was written to by no one for ABANDONED_AFTER_S."""
    host, pid = None, None
    fields = part.name[len(target.name) + 2 :].rsplit(".", 3)  # host (may hold dots), pid, ...
    if len(fields) == 4 and fields[1].isdigit():
        host, pid = fields[0], int(fields[1])
    if host == socket.gethostname() and pid is not None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # another user's live process
    try:
        return time.time() - part.stat().st_mtime > ABANDONED_AFTER_S
    except FileNotFoundError:
        return False  # its writer just finished


def _remove_abandoned_parts(target: Path) -> None:
    """Delete the temporary files that killed copies of `target` left behind."""
    for part in target.parent.glob(f".{glob.escape(target.name)}.*.part"):
        if _abandoned(part, target):
            part.unlink(missing_ok=True)


def _copy_verified(
    source: BinaryIO, target: Path, file: RemoteFile, origin: object, total: int | None
) -> None:
    """Stream `source` (`origin` names it in errors, `total` bytes if known) into `target`
    through a temporary file, hashing as it goes; the file is renamed into place only if the
    SHA-256 matches."""
    with (
        atomic_file(target, suffix=".part") as out,
        tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            desc=file.relpath,
            leave=False,
            disable=os.environ.get("CI") == "true",
        ) as bar,
    ):
        digest = hashlib.sha256()
        while chunk := source.read(CHUNK):
            out.write(chunk)
            digest.update(chunk)
            bar.update(len(chunk))
        if digest.hexdigest() != file.sha256:
            raise ChecksumError(_mismatch(origin, digest.hexdigest(), file))


def _offline_message(missing: list[RemoteFile], reason: str) -> str:
    root = data_root()
    lines = [f"could not fetch {len(missing)} dataset file(s) ({reason}). Fetch them by hand:"]
    lines += [f"  {f.url}\n      -> {root / f.relpath}   (sha256 {f.sha256})" for f in missing]
    lines.append(
        f"or point {MIRROR_ENV} at a directory that holds them as <dataset>/<file> "
        f"(e.g. {MIRROR_ENV}=../shared/data)."
    )
    return "\n".join(lines)


def fetch(file: RemoteFile) -> Path:
    """The verified local path of `file`: from the cache, a mirror, or its URL (in that order).

    A corrupt cache file is an error (never re-used, never silently replaced). A corrupt copy
    in a mirror or at the URL is skipped for the next source, with a warning that names it;
    when no source has a good copy, the error names every bad one."""
    target = data_root() / file.relpath
    if target.exists():
        _remove_abandoned_parts(target)
        actual = sha256sum(target)
        if actual != file.sha256:
            raise ChecksumError(f"{_mismatch(target, actual, file)} Delete it to fetch it again.")
        return target
    bad_copies: list[str] = []
    for mirror in mirror_dirs():
        candidate = mirror / file.relpath
        if candidate.is_file():
            try:
                with open(candidate, "rb") as source:
                    _copy_verified(source, target, file, candidate, candidate.stat().st_size)
            except ChecksumError as err:
                bad_copies.append(f"{err} Replace it in the mirror {mirror} or remove it.")
                continue
            return _fetched(target, bad_copies, candidate)
    try:
        with urllib.request.urlopen(file.url, timeout=30) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            _copy_verified(response, target, file, file.url, total)
    except ChecksumError as err:
        bad_copies.append(f"{err} The server sent a bad copy; nothing was kept.")
        raise ChecksumError("\n".join(bad_copies)) from None
    except (urllib.error.URLError, OSError) as err:
        if bad_copies:
            raise ChecksumError(
                "\n".join([*bad_copies, f"and {file.url} could not be fetched ({err})."])
            ) from err
        raise DataUnavailableError(
            _offline_message([file], f"{type(err).__name__}: {err}")
        ) from err
    return _fetched(target, bad_copies, file.url)


def _fetched(target: Path, bad_copies: list[str], used: object) -> Path:
    """Tidy up after a good copy reached `target`, and report the bad ones skipped before it."""
    _remove_abandoned_parts(target)
    for bad in bad_copies:
        warnings.warn(f"{bad} Used the good copy from {used}.", CorruptCopyWarning, stacklevel=3)
    return target


def fetch_all(files: Iterable[RemoteFile]) -> list[Path]:
    """Fetch several files; if any cannot be had, one error lists every one that is missing."""
    files = list(files)
    paths: list[Path] = []
    missing: list[RemoteFile] = []
    reason = ""
    for file in files:
        try:
            paths.append(fetch(file))
        except DataUnavailableError as err:
            missing.append(file)
            reason = f"{type(err.__cause__).__name__}: {err.__cause__}"
    if missing:
        raise DataUnavailableError(_offline_message(missing, reason))
    return paths


def extract_zip(archive: Path, target_dir: Path) -> Path:
    """Extract `archive` into `target_dir`, refusing any member that would land outside it."""
    target_dir = target_dir.resolve()
    with zipfile.ZipFile(archive) as zf:
        for member in zf.infolist():
            destination = (target_dir / member.filename).resolve()
            if not destination.is_relative_to(target_dir):
                raise DataError(
                    f"{archive} holds {member.filename!r}, which would be written outside "
                    f"{target_dir}; refusing to extract an unsafe archive."
                )
        tmp_dir = Path(tempfile.mkdtemp(prefix=".extract.", dir=target_dir.parent))
        try:
            zf.extractall(tmp_dir)
            for item in tmp_dir.iterdir():
                dest = target_dir / item.name
                if dest.exists():
                    shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
                target_dir.mkdir(parents=True, exist_ok=True)
                os.replace(item, dest)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    return target_dir
