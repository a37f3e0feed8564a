"""qbench data fetch (qbench.data.download, qbench.data.sets) against a local HTTP server on 127.0.0.1: first download,
cache hit, hash mismatches (nothing kept), an interrupted download resumed with Range, offline, the mirror, two
fetchers at once; the shipped Imagenette manifest; suite rules for named sets."""

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from qbench.data.download import DataHashMismatch, DownloadError, download
from qbench.data.sets import fetch, load_manifest, parse_source, resolve_source
from qbench.errors import ConfigError
from qbench.suite.load import parse_suite
from tests.served import Served

WNIDS = ("n01440764", "n02102040")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_set(per_class: int = 3, size: int = 20_000) -> dict[str, bytes]:
    """{relative path: bytes}: train and val splits of two wnid classes (the bytes need not decode here)."""
    files = {}
    for split in ("train", "val"):
        for wnid in WNIDS:
            for n in range(per_class):
                files[f"{split}/{wnid}/{wnid}_{n}.JPEG"] = hashlib.sha256(f"{split}{wnid}{n}".encode()).digest() * (
                    size // 32)
    return files


def tarball(files: dict[str, bytes], root: str = "tiny") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path, data in sorted(files.items()):
            info = tarfile.TarInfo(f"{root}/{path}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def write_manifest(folder: Path, archive: bytes, files: dict[str, bytes] | None, url: str, **overrides) -> Path:
    manifest = {"format": "qbench-data-manifest/1", "name": "tiny", "licence": "test data",
                "archive": {"url": url, "sha256": sha256(archive), "size": len(archive), "root": "tiny"},
                "splits": {"train": "train", "val": "val"}, "labels": "wnid",
                "files": None if files is None else {p: sha256(d) for p, d in files.items()}, **overrides}
    path = folder / "tiny.json"
    path.write_text(json.dumps(manifest))
    return path


@pytest.fixture
def data_env(tmp_path, monkeypatch):
    monkeypatch.setenv("QBENCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("QBENCH_OFFLINE", raising=False)
    monkeypatch.delenv("QBENCH_MIRROR", raising=False)
    monkeypatch.setenv("QBENCH_DATA_MANIFESTS", str(tmp_path / "manifests"))
    (tmp_path / "manifests").mkdir()
    return tmp_path


def leftovers(root: Path) -> list[str]:
    """Everything under the data root but qbench's lock files."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if ".qbench-locks" not in p.parts)


def test_first_download_then_cache_hit(data_env):
    files = make_set()
    archive = tarball(files)
    with Served({"/sets/tiny.tgz": archive}) as server:
        manifest = write_manifest(data_env / "manifests", archive, files, server.url + "/sets/tiny.tgz")
        first = fetch(str(manifest))
        second = fetch("tiny")  # by name, found in $QBENCH_DATA_MANIFESTS
        assert server.count("/sets/tiny.tgz") == 1
    assert first["downloaded"] and not second["downloaded"]
    assert first["files"] == len(files) and first["files_verified"] == "sha256 of every file from the manifest"
    folder = data_env / "data" / "tiny"
    assert {p: (folder / p).read_bytes() for p in files} == files
    assert not (data_env / "data" / "downloads" / "tiny.tgz").exists()  # extracted and verified: archive dropped
    path, identity = resolve_source("data:tiny/val")
    assert path == str(folder / "val")
    assert identity["name"] == "tiny" and identity["split"] == "val" and identity["files"] == len(files)
    assert identity["files_sha256"] == first["files_sha256"]


def test_archive_hash_mismatch_keeps_nothing(data_env):
    files = make_set()
    archive = tarball(files)
    with Served({"/sets/tiny.tgz": archive}) as server:
        manifest = write_manifest(data_env / "manifests", tarball(make_set(per_class=2)), files,
                                  server.url + "/sets/tiny.tgz")
        manifest_data = json.loads(manifest.read_text())
        manifest_data["archive"]["size"] = None  # let the sha256 be what fails
        manifest.write_text(json.dumps(manifest_data))
        with pytest.raises(DataHashMismatch) as caught:
            fetch("tiny")
    message = str(caught.value)
    assert "\n" not in message and "sha256" in message and "nothing was kept" in message
    assert leftovers(data_env / "data") == ["downloads"]
    with pytest.raises(ConfigError, match="qbench data fetch tiny"):
        resolve_source("data:tiny/val")


def test_a_changed_file_in_a_good_archive_keeps_nothing(data_env):
    files = make_set()
    archive = tarball(files)
    with Served({"/sets/tiny.tgz": archive}) as server:
        expected = dict(files, **{"val/n01440764/n01440764_0.JPEG": b"not what was published"})
        write_manifest(data_env / "manifests", archive, expected, server.url + "/sets/tiny.tgz")
        with pytest.raises(DataHashMismatch, match="1 changed"):
            fetch("tiny")
    assert leftovers(data_env / "data") == ["downloads"]


def test_file_list_without_hashes_is_checked_and_hashes_recorded(data_env):
    files = make_set()
    archive = tarball({**files, "notes.csv": b"path,label\n"})
    (data_env / "manifests" / "tiny.files.txt").write_text("\n".join(sorted(files)) + "\n")
    with Served({"/sets/tiny.tgz": archive}) as server:
        write_manifest(data_env / "manifests", archive, None, server.url + "/sets/tiny.tgz",
                       file_list="tiny.files.txt")
        state = fetch("tiny")
    assert state["files_verified"] == ("archive sha256, image paths against the manifest's file list; per-file "
                                       "sha256 recorded at fetch")
    out = subprocess.run([sys.executable, "-m", "qbench", "data", "manifest", "tiny"], capture_output=True,
                         text=True, env=os.environ.copy(), check=True).stdout
    recorded = json.loads(out)["files"]
    assert recorded == {**{p: sha256(d) for p, d in files.items()}, "notes.csv": sha256(b"path,label\n")}


def test_file_list_mismatch_keeps_nothing(data_env):
    files = make_set()
    archive = tarball(files)
    (data_env / "manifests" / "tiny.files.txt").write_text("\n".join(sorted(files)[1:] + ["val/x/missing.JPEG"]))
    with Served({"/sets/tiny.tgz": archive}) as server:
        write_manifest(data_env / "manifests", archive, None, server.url + "/sets/tiny.tgz",
                       file_list="tiny.files.txt")
        with pytest.raises(DataHashMismatch, match="1 missing .* 1 unlisted"):
            fetch("tiny")
    assert leftovers(data_env / "data") == ["downloads"]


def test_interrupted_download_is_resumed_with_range(tmp_path):
    data = os.urandom(300_000)
    dest = tmp_path / "blob.bin"
    with Served({"/blob.bin": data}) as server:
        server.drop_after["/blob.bin"] = 100_000
        with pytest.raises(DownloadError) as caught:
            download(server.url + "/blob.bin", str(dest), sha256=sha256(data), retries=0)
        assert "\n" not in str(caught.value) and "run it again to resume" in str(caught.value)
        assert not dest.exists() and (tmp_path / "blob.bin.part").stat().st_size == 100_000
        assert download(server.url + "/blob.bin", str(dest), sha256=sha256(data))
        assert server.requests == [("/blob.bin", None), ("/blob.bin", "bytes=100000-")]
    assert dest.read_bytes() == data and not (tmp_path / "blob.bin.part").exists()


def test_a_dropped_connection_is_retried_within_one_call(tmp_path):
    data = os.urandom(200_000)
    with Served({"/blob.bin": data}) as server:
        server.drop_after["/blob.bin"] = 70_000
        assert download(server.url + "/blob.bin", str(tmp_path / "blob.bin"), sha256=sha256(data))
        assert [r for _, r in server.requests] == [None, "bytes=70000-"]
    assert (tmp_path / "blob.bin").read_bytes() == data


def test_a_corrupt_partial_file_fails_the_hash_and_is_deleted(tmp_path):
    data = os.urandom(100_000)
    (tmp_path / "blob.bin.part").write_bytes(b"garbage" * 100)
    with Served({"/blob.bin": data}) as server:
        with pytest.raises(DataHashMismatch):
            download(server.url + "/blob.bin", str(tmp_path / "blob.bin"), sha256=sha256(data))
        assert not (tmp_path / "blob.bin.part").exists() and not (tmp_path / "blob.bin").exists()
        assert download(server.url + "/blob.bin", str(tmp_path / "blob.bin"), sha256=sha256(data))


def test_offline_fetches_nothing(data_env, monkeypatch):
    files = make_set()
    archive = tarball(files)
    with Served({"/sets/tiny.tgz": archive}) as server:
        write_manifest(data_env / "manifests", archive, files, server.url + "/sets/tiny.tgz")
        monkeypatch.setenv("QBENCH_OFFLINE", "1")
        with pytest.raises(ConfigError, match="QBENCH_OFFLINE is set"):
            fetch("tiny")
        assert server.requests == []


def test_the_mirror_replaces_the_host(data_env, monkeypatch):
    files = make_set()
    archive = tarball(files)
    with Served({"/fast-ai-imageclas/tiny.tgz": archive}) as server:
        write_manifest(data_env / "manifests", archive, files, "https://s3.amazonaws.com/fast-ai-imageclas/tiny.tgz")
        monkeypatch.setenv("QBENCH_MIRROR", server.url + "/")
        assert fetch("tiny")["downloaded"]
        assert server.requests == [("/fast-ai-imageclas/tiny.tgz", None)]


def test_two_fetchers_at_once_download_once(data_env):
    files = make_set(per_class=4, size=200_000)
    archive = tarball(files)
    with Served({"/sets/tiny.tgz": archive}, pace_s=0.01) as server:
        write_manifest(data_env / "manifests", archive, files, server.url + "/sets/tiny.tgz")
        command = [sys.executable, "-m", "qbench", "data", "fetch", "tiny"]
        workers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=os.environ.copy()) for _ in range(2)]
        outputs = [worker.communicate(timeout=300) for worker in workers]
        assert [worker.returncode for worker in workers] == [0, 0], outputs
        assert server.count("/sets/tiny.tgz") == 1
    verbs = sorted(out.split()[0] for out, _ in outputs)
    assert verbs == ["cached", "fetched"]
    assert leftovers(data_env / "data") == sorted(["downloads", "tiny", "tiny/.qbench-data.json"] + [
        f"tiny/{p}" for p in files] + [f"tiny/{s}" for s in ("train", "val")] + [
        f"tiny/{s}/{w}" for s in ("train", "val") for w in WNIDS])


def test_cli_mismatch_is_one_line_and_exit_2(data_env):
    files = make_set()
    archive = tarball(files)
    with Served({"/sets/tiny.tgz": archive}) as server:
        write_manifest(data_env / "manifests", tarball(make_set(per_class=1)), files, server.url + "/sets/tiny.tgz")
        done = subprocess.run([sys.executable, "-m", "qbench", "data", "fetch", "tiny"], capture_output=True,
                              text=True, env=os.environ.copy())
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if not line.startswith("download  ")]  # progress lines
    assert len(errors) == 1 and errors[0].startswith("qbench: error: ") and "nothing was kept" in errors[0]


def test_shipped_imagenette_manifest():
    manifest, digest = load_manifest("imagenette2-160")
    assert manifest["archive"]["url"] == "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz"
    assert manifest["archive"]["md5"] == "e793b78cc4c9e9a4ccc0c1155377a412"
    listed = manifest["_file_list"]
    assert len(listed) == 13_394 and len(set(listed)) == len(listed)
    splits = {split: [p for p in listed if p.startswith(split + "/")] for split in ("train", "val")}
    assert (len(splits["train"]), len(splits["val"])) == (9_469, 3_925)
    from qbench.runner.registry.evalset import wnid_index

    classes = sorted({p.split("/")[1] for p in listed})
    assert [wnid_index(w) for w in classes] == [0, 217, 482, 491, 497, 566, 569, 571, 574, 701]


def suite(calibration: str, accuracy: str, **accuracy_fields) -> dict:
    return {"suite": {"name": "s"}, "matrix": [{"models": ["resnet18"], "modes": ["fp32"]}],
            "calibration": {"source": calibration}, "accuracy": {"source": accuracy, **accuracy_fields}}


def test_suites_name_sets_and_never_calibrate_on_the_evaluation_images(tmp_path):
    spec = parse_suite(suite("data:imagenette2-160/train", "data:imagenette2-160/val", max_drop="1%"))
    assert spec.accuracy.max_drop == "1%"
    with pytest.raises(ConfigError, match="calibrating on the evaluation images"):
        parse_suite(suite("data:imagenette2-160/val", "data:imagenette2-160/val"))
    with pytest.raises(ConfigError, match="calibrating on the evaluation images"):
        parse_suite(suite(str(tmp_path), str(tmp_path) + "/"))
    with pytest.raises(ConfigError, match=r"\[accuracy\] data source"):
        parse_suite(suite("synthetic", "data:imagenette2-160"))
    with pytest.raises(ConfigError, match="max_drop"):
        parse_suite(suite("synthetic", "synthetic", max_drop="1"))
    assert parse_source("data:imagenette2-160/val") == ("imagenette2-160", "val")
