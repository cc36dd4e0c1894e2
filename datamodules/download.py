"""Fetch, cache and verify dataset files, shared by every datamodule.

Files land in ``$LITZOO_DATA`` (default ``~/.cache/litzoo``) as ``<dataset>/<file>``. Before the
canonical URL is tried, each directory of ``$LITZOO_MIRROR`` (colon-separated) laid out the same
way is looked in. Every file is checked by SHA-256 and written atomically, so an interrupted
copy never passes for a whole file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from registry import ConfigurationError

DATA_ENV = "LITZOO_DATA"
MIRROR_ENV = "LITZOO_MIRROR"
CHUNK = 1 << 20


class DataError(ConfigurationError):
    """A dataset file is missing, corrupt or cannot be fetched; the message says what to do."""


class ChecksumError(DataError):
    """A file exists but its SHA-256 is not the expected one; it is never used."""


class DataUnavailableError(DataError):
    """No cache, no mirror and no network had the file."""


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


def _check(path: Path, file: RemoteFile, how_to_fix: str) -> None:
    actual = sha256sum(path)
    if actual != file.sha256:
        raise ChecksumError(
            f"{path} is corrupt or a different version: SHA-256 {actual}, expected "
            f"{file.sha256} for {file.relpath}. {how_to_fix}"
        )


def _write_atomically(source: BinaryIO, target: Path, file: RemoteFile, total: int | None) -> None:
    """Stream into a temporary file beside `target`, verify it, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with (
            os.fdopen(fd, "wb") as out,
            tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                desc=file.relpath,
                leave=False,
                disable=os.environ.get("CI") == "true",
            ) as bar,
        ):
            while chunk := source.read(CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
        _check(tmp, file, f"The source of {file.url} served a bad copy; nothing was kept.")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


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
    """The verified local path of `file`: from the cache, a mirror, or its URL (in that order)."""
    target = data_root() / file.relpath
    if target.exists():
        _check(target, file, f"Delete {target} to fetch it again.")
        return target
    for mirror in mirror_dirs():
        candidate = mirror / file.relpath
        if candidate.is_file():
            _check(candidate, file, f"Replace it in the mirror {mirror} or unset {MIRROR_ENV}.")
            with open(candidate, "rb") as source:
                _write_atomically(source, target, file, candidate.stat().st_size)
            return target
    try:
        with urllib.request.urlopen(file.url, timeout=30) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            _write_atomically(response, target, file, total)
    except (urllib.error.URLError, OSError) as err:
        raise DataUnavailableError(
            _offline_message([file], f"{type(err).__name__}: {err}")
        ) from err
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
