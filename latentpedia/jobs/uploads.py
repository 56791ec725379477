"""SAE folders uploaded as a zip: checked and unpacked under the data dir, never outside it.

Refused with InvalidInputError (nothing left behind): not a zip, too many members, a member whose
path is absolute, climbs out (`..`), names a drive or is a symlink, encrypted members, more than
`max_unpacked` bytes once unpacked (counted while unpacking, not trusted from the headers), or a
member that inflates more than `MAX_RATIO` times (a zip bomb; SAE weights barely compress).
Torch-free: the web calls it before queueing an import.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from latentpedia.config import data_dir
from latentpedia.errors import InvalidInputError

MAX_UPLOAD_ENV = "LATENTPEDIA_MAX_UPLOAD_BYTES"
DEFAULT_MAX_UPLOAD = 2 * 1024**3  # the zip itself
MAX_UNPACKED = 8 * 1024**3
MAX_MEMBERS = 2000
MAX_RATIO = 200  # uncompressed / compressed bytes of one member
CHUNK = 1 << 20


class UploadTooLargeError(InvalidInputError):
    """The upload itself is larger than allowed (the web answers 413)."""


def max_upload_bytes() -> int:
    """The largest zip accepted ($LATENTPEDIA_MAX_UPLOAD_BYTES, default 2 GiB)."""
    try:
        return max(int(os.environ.get(MAX_UPLOAD_ENV, DEFAULT_MAX_UPLOAD)), 1)
    except ValueError:
        return DEFAULT_MAX_UPLOAD


def uploads_dir() -> Path:
    return data_dir() / "uploads"


def new_upload_dir() -> Path:
    """A fresh folder for one upload."""
    folder = uploads_dir() / secrets.token_hex(8)
    folder.mkdir(parents=True)
    return folder


def _member_path(info: zipfile.ZipInfo) -> PurePosixPath:
    name = info.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if name.startswith("/") or path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise InvalidInputError(f"unsafe path in the zip: {info.filename!r}")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise InvalidInputError(f"the zip holds a symbolic link: {info.filename!r}")
    if info.flag_bits & 0x1:
        raise InvalidInputError(f"the zip member {info.filename!r} is encrypted")
    return path


def check_zip(archive: zipfile.ZipFile, *, max_unpacked: int = MAX_UNPACKED) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """The members to unpack, after checking what the headers say (see the module doc)."""
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise InvalidInputError(f"the zip has {len(infos):,} members; at most {MAX_MEMBERS:,} are accepted")
    members, declared = [], 0
    for info in infos:
        path = _member_path(info)
        if info.is_dir():
            continue
        declared += info.file_size
        if info.file_size > 1024 * 1024 and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise InvalidInputError(f"the zip member {info.filename!r} inflates {info.file_size / max(info.compress_size, 1):,.0f} times: refused (zip bomb?)")
        members.append((info, path))
    if declared > max_unpacked:
        raise InvalidInputError(f"the zip unpacks to {declared:,} bytes; at most {max_unpacked:,} are accepted")
    if not members:
        raise InvalidInputError("the zip holds no file")
    return members


def unpack_sae_zip(zip_path: Path, dest: Path, *, max_unpacked: int = MAX_UNPACKED) -> Path:
    """Unpack the SAE zip at `zip_path` into the empty folder `dest`; returns the SAE folder
    (the single top-level folder when the zip has one). On any refusal `dest` is removed."""
    try:
        if not zipfile.is_zipfile(zip_path):
            raise InvalidInputError("the upload is not a zip file")
        with zipfile.ZipFile(zip_path) as archive:
            members = check_zip(archive, max_unpacked=max_unpacked)
            written = 0
            for info, path in members:
                target = dest.joinpath(*path.parts)
                if not target.resolve().is_relative_to(dest.resolve()):
                    raise InvalidInputError(f"unsafe path in the zip: {info.filename!r}")
                target.parent.mkdir(parents=True, exist_ok=True)
                written = _copy_member(archive, info, target, written, max_unpacked)
    except InvalidInputError:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError) as err:
        shutil.rmtree(dest, ignore_errors=True)
        raise InvalidInputError(f"the zip cannot be read: {err}") from None
    tops = {path.parts[0] for _, path in members}
    only = dest / next(iter(tops))
    return only if len(tops) == 1 and only.is_dir() else dest


def _copy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, written: int, limit: int) -> int:
    """Copy one member, counting real bytes (headers can lie)."""
    own = 0
    with archive.open(info) as src, open(target, "wb") as out:
        while chunk := src.read(CHUNK):
            own += len(chunk)
            written += len(chunk)
            if own > info.file_size or written > limit:
                raise InvalidInputError(f"the zip member {info.filename!r} unpacks to more bytes than it declares (zip bomb?)")
            out.write(chunk)
    return written
