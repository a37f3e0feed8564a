"""Named data sets: a manifest shipped with qbench (qbench/data/manifests/<name>.json) says where a set comes from,
how it is verified, its licence and its splits; `qbench data fetch NAME` brings it into the data cache
($QBENCH_DATA_DIR, default ~/.cache/qbench/data) as <cache>/<name>/, and suites name a split of it as
`source = "data:<name>/<split>"` ([accuracy] and [calibration]; the two must differ, see qbench.suite.load).

Manifest (JSON, format "qbench-data-manifest/1"):

    {"format": "qbench-data-manifest/1", "name": "imagenette2-160", "description": "...",
     "licence": "...", "homepage": "...",
     "archive": {"url": "https://.../imagenette2-160.tgz", "sha256": null | "<hex>", "md5": null | "<hex>",
                 "size": null | bytes, "root": "imagenette2-160", "hash_source": "where the hash was published"},
     "splits": {"train": "train", "val": "val"},          # split name -> folder under the archive's root
     "labels": "wnid",                                      # how the split's class folders are labelled
     "files": null | {"val/n01440764/x.JPEG": "<sha256>", ...},   # every file, relative to the root
     "files_source": "how the per-file sha256s were obtained",
     "file_list": null | "<name>.files.txt",   # beside the manifest: every image path, one a line, no hashes
     "file_list_source": "where that list comes from"}

A set without "archive" is fetched file by file from "base_url" + "/" + path, each checked against "files".
Verification, in order: the archive against every hash the manifest gives (sha256 and/or md5, and its size); its
members extracted with tarfile's "data" filter (no absolute paths, links out of the tree or devices) into a temporary
folder; then every file against "files" when the manifest lists them (a missing, extra or changed file is an error),
and the extracted images against "file_list" when it names one (exactly those image paths; other files, such as a
CSV the archive ships, are allowed).
When it lists none (a real set whose per-file hashes were never published), the sha256 of every extracted file is
recorded in <cache>/<name>/.qbench-data.json at fetch time, and the set's identity says "files recorded at fetch"
(`qbench data manifest NAME` prints them in manifest form, for shipping). The folder is moved into place only when
everything checks out, under a lock, so concurrent fetchers of one set download it once.

Every download goes through the mirror setting (qbench.data.network) and none happens when offline.
Stdlib only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import uuid
from collections.abc import Callable
from pathlib import Path

from qbench.data.download import DataHashMismatch, download, file_digest, locked
from qbench.data.network import mirrored, offline
from qbench.errors import ConfigError

__all__ = ["fetch_suite_sets", "MANIFEST_FORMAT", "PREFIX", "data_root", "manifest_dirs", "known_sets", "load_manifest",
           "fetch", "is_named", "parse_source", "resolve_source", "dataset_identity", "recorded_files"]

MANIFEST_FORMAT = "qbench-data-manifest/1"
PREFIX = "data:"
STATE_FILE = ".qbench-data.json"
DATA_DIR_VARIABLE = "QBENCH_DATA_DIR"
MANIFESTS_VARIABLE = "QBENCH_DATA_MANIFESTS"
_SHIPPED = Path(__file__).resolve().parent / "manifests"


def data_root() -> Path:
    return Path(os.environ.get(DATA_DIR_VARIABLE) or Path.home() / ".cache" / "qbench" / "data").expanduser()


def manifest_dirs() -> list[Path]:
    """Folders searched for <name>.json: those in $QBENCH_DATA_MANIFESTS (os.pathsep-separated), then qbench's own."""
    extra = [Path(p).expanduser() for p in os.environ.get(MANIFESTS_VARIABLE, "").split(os.pathsep) if p]
    return extra + [_SHIPPED]


def known_sets() -> list[str]:
    return sorted({p.stem for folder in manifest_dirs() if folder.is_dir() for p in folder.glob("*.json")})


def _require(condition: bool, where: str, what: str) -> None:
    if not condition:
        raise ConfigError(f"data manifest {where}: {what}")


def _check_manifest(data, where: str) -> dict:
    _require(isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT, where,
             f"expected a JSON object with \"format\": \"{MANIFEST_FORMAT}\"")
    _require(isinstance(data.get("name"), str) and data["name"], where, "needs a \"name\"")
    _require(isinstance(data.get("splits"), dict) and data["splits"], where, "needs \"splits\": {split: folder}")
    archive, files = data.get("archive"), data.get("files")
    _require(files is None or isinstance(files, dict), where, "\"files\" must be null or {path: sha256}")
    if archive is not None:
        _require(isinstance(archive, dict) and isinstance(archive.get("url"), str), where, "archive needs a \"url\"")
        _require(bool(archive.get("sha256") or archive.get("md5")), where, "archive needs a \"sha256\" or \"md5\"")
    else:
        _require(isinstance(data.get("base_url"), str) and bool(files), where,
                 "a set without \"archive\" needs \"base_url\" and \"files\"")
    return data


def load_manifest(name_or_path: str) -> tuple[dict, str]:
    """(manifest, sha256 of its file) of a set name or a manifest file path."""
    if name_or_path.endswith(".json") or os.sep in name_or_path:
        path = Path(name_or_path).expanduser()
        _require(path.is_file(), str(path), "no such file")
    else:
        found = [folder / f"{name_or_path}.json" for folder in manifest_dirs()]
        path = next((p for p in found if p.is_file()), None)
        if path is None:
            raise ConfigError(f"unknown data set {name_or_path!r}; known: {', '.join(known_sets()) or 'none'}")
    raw = path.read_bytes()
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"data manifest {path} is not valid JSON: {exc}") from None
    data = _check_manifest(data, str(path))
    digest = hashlib.sha256(raw)
    if data.get("file_list"):
        listed = path.parent / data["file_list"]
        _require(listed.is_file(), str(path), f"its file list {listed} does not exist")
        text = listed.read_bytes()
        digest.update(text)
        data = {**data, "_file_list": [line for line in text.decode().splitlines() if line.strip()]}
    return data, digest.hexdigest()


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _check_file_list(listed: list[str] | None, actual: dict[str, str], name: str) -> None:
    if listed is None:
        return
    images = {p for p in actual if p.lower().endswith(IMAGE_EXTENSIONS)}
    missing, extra = sorted(set(listed) - images), sorted(images - set(listed))
    if missing or extra:
        parts = [f"{len(v)} {k} (e.g. {v[0]})" for k, v in (("missing", missing), ("unlisted", extra)) if v]
        raise DataHashMismatch(f"data set {name}: images do not match the manifest's file list: {', '.join(parts)}; "
                               f"nothing was kept")


def _tree_files(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every regular file under root (qbench's own state file left out)."""
    found = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != ".qbench-locks")
        for name in names:
            path = Path(folder) / name
            relative = path.relative_to(root).as_posix()
            if relative != STATE_FILE:
                found[relative] = file_digest(str(path))
    return found


def _check_files(expected: dict | None, actual: dict[str, str], name: str) -> None:
    if expected is None:
        return
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    changed = sorted(p for p in set(expected) & set(actual) if expected[p] != actual[p])
    if missing or extra or changed:
        parts = [f"{len(v)} {k} (e.g. {v[0]})" for k, v in (("missing", missing), ("unexpected", extra),
                                                              ("changed", changed)) if v]
        raise DataHashMismatch(f"data set {name}: files do not match the manifest: {', '.join(parts)}; nothing "
                               f"was kept")


def _files_sha256(files: dict[str, str]) -> str:
    return hashlib.sha256("".join(f"{p}\t{files[p]}\n" for p in sorted(files)).encode()).hexdigest()


def _extract(archive_path: str, into: Path) -> None:
    try:
        with tarfile.open(archive_path) as archive:
            archive.extractall(into, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise DataHashMismatch(f"archive {archive_path} cannot be extracted safely: {exc}") from None


def _download_files(manifest: dict, into: Path, progress) -> None:
    for relative, sha256 in sorted(manifest["files"].items()):
        target = into / relative
        download(mirrored(manifest["base_url"].rstrip("/") + "/" + relative), str(target), sha256=sha256,
                 progress=progress)


def fetch(name_or_path: str, *, progress: Callable[[int, int | None], None] | None = None) -> dict:
    """Bring a set into the data cache (see the module doc); its state dict (also kept in <folder>/.qbench-data.json)
    with "downloaded": whether this call fetched it."""
    manifest, manifest_sha256 = load_manifest(name_or_path)
    name = manifest["name"]
    root = data_root()
    final = root / name
    root.mkdir(parents=True, exist_ok=True)
    with locked(str(root), name):
        state = _read_state(final)
        if state is not None and state.get("manifest_sha256") == manifest_sha256:
            return {**state, "downloaded": False}
        if offline():
            raise ConfigError(f"data set {name} is not in the data cache ({final}) and QBENCH_OFFLINE is set; "
                              f"fetch it with `qbench data fetch {name}` where the network (or a mirror) is reachable")
        scratch = root / f".{name}.{uuid.uuid4().hex}.extracting"
        try:
            source = _populate(manifest, root, scratch, progress)
            files = _tree_files(source)
            _check_files(manifest.get("files"), files, name)
            _check_file_list(manifest.get("_file_list"), files, name)
            state = {"name": name, "manifest_sha256": manifest_sha256, "licence": manifest.get("licence"),
                     "archive": _archive_identity(manifest), "files": len(files),
                     "files_sha256": _files_sha256(files),
                     "files_verified": _how_verified(manifest),
                     "file_hashes": files}
            (source / STATE_FILE).write_text(json.dumps(state, indent=1, sort_keys=True))
            if final.exists():
                shutil.rmtree(final)
            os.replace(source, final)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return {**state, "downloaded": True}


def _how_verified(manifest: dict) -> str:
    if manifest.get("files") is not None:
        return "sha256 of every file from the manifest"
    archive = manifest.get("archive") or {}
    how = "archive " + " and ".join(k for k in ("sha256", "md5") if archive.get(k))
    if manifest.get("_file_list") is not None:
        how += ", image paths against the manifest's file list"
    return how + "; per-file sha256 recorded at fetch"


def _archive_identity(manifest: dict) -> dict | None:
    archive = manifest.get("archive")
    if archive is None:
        return None
    return {key: archive.get(key) for key in ("url", "sha256", "md5", "size")}


def _populate(manifest: dict, root: Path, scratch: Path, progress) -> Path:
    """Download (and extract) the set into `scratch`; the folder holding its root."""
    archive = manifest.get("archive")
    scratch.mkdir()
    if archive is None:
        _download_files(manifest, scratch, progress)
        return scratch
    downloads = root / "downloads"
    target = downloads / os.path.basename(archive["url"])
    download(mirrored(archive["url"]), str(target), sha256=archive.get("sha256"), md5=archive.get("md5"),
             size=archive.get("size"), progress=progress)
    _extract(str(target), scratch)
    inner = scratch / archive["root"] if archive.get("root") else scratch
    _require(inner.is_dir(), manifest["name"], f"the archive holds no folder {archive.get('root')!r}")
    os.remove(target)  # extracted and verified: the archive is not needed again
    return inner


def _read_state(folder: Path) -> dict | None:
    try:
        return json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None


def recorded_files(name: str) -> dict[str, str]:
    """{path: sha256} recorded when the set was fetched."""
    state = _read_state(data_root() / name)
    if state is None:
        raise ConfigError(f"data set {name} has not been fetched (qbench data fetch {name})")
    return state["file_hashes"]


def is_named(source: str) -> bool:
    return isinstance(source, str) and source.startswith(PREFIX)


def parse_source(source: str) -> tuple[str, str]:
    """"data:<name>/<split>" → (name, split); a ConfigError otherwise (pure, no I/O)."""
    name, slash, split = source[len(PREFIX):].partition("/")
    if not is_named(source) or not name or not slash or not split or "/" in split:
        raise ConfigError(f"data source {source!r} must be \"data:<set name>/<split>\", e.g. "
                          f"\"data:imagenette2-160/val\"")
    return name, split


def resolve_source(source: str) -> tuple[str, dict]:
    """(folder of the split, identity of the set) of a "data:<name>/<split>" source that has been fetched."""
    name, split = parse_source(source)
    manifest, manifest_sha256 = load_manifest(name)
    folder = data_root() / name
    state = _read_state(folder)
    if state is None:
        raise ConfigError(f"data set {name} is not in the data cache ({folder}): run `qbench data fetch {name}`")
    if state.get("manifest_sha256") != manifest_sha256:
        raise ConfigError(f"data set {name} in {folder} was fetched with another manifest: run "
                          f"`qbench data fetch {name}` again")
    splits = manifest["splits"]
    if split not in splits:
        raise ConfigError(f"data set {name} has no split {split!r}; splits: {', '.join(sorted(splits))}")
    return str(folder / splits[split]), dataset_identity(state, split)


def dataset_identity(state: dict, split: str) -> dict:
    """What a record keeps about the named set it read (no per-file hashes: their digest stands for them)."""
    return {"name": state["name"], "split": split, "manifest_sha256": state["manifest_sha256"],
            "licence": state.get("licence"), "archive": state.get("archive"), "files": state["files"],
            "files_sha256": state["files_sha256"], "files_verified": state["files_verified"]}


def fetch_suite_sets(spec, env: dict) -> list[str]:
    """Bring the named data sets the suite reads ("data:<name>/<split>") into the data cache before any worker needs
    them (a cache hit costs one file read; offline, a missing set is the one-line error). `env` is the workers'
    network settings (offline, mirror), applied while fetching. Returns a line per set it downloaded."""
    import os

    sources = [spec.calibration.source, spec.accuracy.source if spec.accuracy.images else "synthetic"]
    names = dict.fromkeys(parse_source(s)[0] for s in sources if is_named(s))
    if not names:
        return []
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    done = []
    try:
        for name in names:
            state = fetch(name)
            if state["downloaded"]:
                done.append(f"data      fetched {name} ({state['files']} files, {state['files_verified']})")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return done
