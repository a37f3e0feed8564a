"""The one way qbench writes a file atomically and reads a versioned JSON document."""
from __future__ import annotations

import json
import os
from pathlib import Path

from qbench.errors import InfraError, SchemaVersionError, StoreError

__all__ = ["write_atomic", "write_json_atomic", "read_versioned"]


def write_atomic(path: Path | str, text: str) -> Path:
    """Write `text` under a temporary name in the same folder, fsync it, then rename it over `path`:
    a reader sees the old file or the new one, never a torn one, and a crash leaves at most a dot-file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise InfraError(f"cannot write {path}: {exc.strerror}") from None
    return path


def write_json_atomic(path: Path | str, document, *, indent: int | None = 2) -> Path:
    """`write_atomic` of a JSON document; NaN and infinity are refused (they are not JSON)."""
    return write_atomic(path, json.dumps(document, indent=indent, sort_keys=True, allow_nan=False) + "\n")


def read_versioned(path: Path | str, what: str, newest: int, *, missing=None, hint: str = "") -> dict:
    """A JSON object with an integer `schema_version` no newer than `newest`.

    `missing` is returned when the file does not exist; an unreadable file or one that is not such an object is a
    StoreError, a newer version a SchemaVersionError (upgrade qbench). `what` names the document in the error."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return missing
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"{path}: unreadable {what} ({type(exc).__name__}: {exc}){hint}") from None
    version = data.get("schema_version") if isinstance(data, dict) else None
    if not isinstance(version, int) or isinstance(version, bool):
        raise StoreError(f"{path}: not a {what} (no schema_version){hint}")
    if version > newest:
        raise SchemaVersionError(f"{path}: written with {what} schema version {version}, newer than this qbench "
                                 f"reads ({newest}); upgrade qbench")
    return data
