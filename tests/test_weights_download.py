"""Pretrained weights that download themselves (qbench.runner.registry.hub) from a local HTTP server on 127.0.0.1
acting as the mirror: the learned resnet18 of tests/learned.py served under torchvision's file name. The published
name's sha256 prefix rejects it (the mismatch test); a weights manifest declaring the stand-in's full sha256 admits
it, cached apart and recorded in the provenance."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from qbench.errors import WeightsHashMismatch, WeightsNotFound
from qbench.runner.registry.hub import STAND_IN_FOLDER
from qbench.runner.registry.models import open_model
from qbench.runner.registry.weights import cache_path, default_weights
from tests.learned import MODEL, learned  # noqa: F401  (a session fixture)
from tests.served import Served

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

URL_PATH = "/models/" + os.path.basename(default_weights(MODEL).url)  # /models/resnet18-f37072fd.pth


def sha256_of(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def stand_in_manifest(folder: Path, checkpoint: str) -> Path:
    path = folder / "weights.json"
    path.write_text(json.dumps({"format": "qbench-weights-manifest/1",
                                "note": "tests: the learned resnet18 stands in for torchvision's",
                                "files": {os.path.basename(URL_PATH): {"sha256": sha256_of(checkpoint)}}}))
    return path


@pytest.fixture
def hub(tmp_path, monkeypatch, learned):  # noqa: F811
    """An empty TORCH_HOME, and a server serving the learned checkpoint under torchvision's name, as the mirror."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    for name in ("QBENCH_OFFLINE", "QBENCH_WEIGHTS_MANIFEST"):
        monkeypatch.delenv(name, raising=False)
    with Served({URL_PATH: Path(learned.checkpoint).read_bytes()}) as server:
        monkeypatch.setenv("QBENCH_MIRROR", server.url)
        yield server


def partials(root) -> list[str]:
    return [str(p) for p in Path(root).rglob("*") if p.name.endswith(".partial") or p.name.endswith(".part")]


def test_first_download_then_cache_hit_of_a_declared_stand_in(hub, tmp_path, monkeypatch, learned):  # noqa: F811
    manifest = stand_in_manifest(tmp_path, learned.checkpoint)
    monkeypatch.setenv("QBENCH_WEIGHTS_MANIFEST", str(manifest))
    source = open_model(MODEL, "pretrained")
    model = source.float_model()
    info = source.weights_info()
    digest = sha256_of(learned.checkpoint)
    assert hub.requests == [(URL_PATH, None)]
    assert info["sha256"] == digest
    assert info["file"] == str(tmp_path / "torch_home" / "hub" / "checkpoints" / STAND_IN_FOLDER / digest[:16]
                               / os.path.basename(URL_PATH))
    verified = info["verified"]
    assert verified["by"].startswith("weights manifest") and verified["manifest"] == str(manifest)
    assert verified["manifest_sha256"] == sha256_of(manifest) and verified["sha256"] == digest
    assert verified["matches"] and verified["url"] == hub.url + URL_PATH
    assert not os.path.exists(cache_path(default_weights(MODEL)))  # the official name never holds a stand-in
    expected = torch.load(learned.checkpoint, weights_only=True)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in expected.items())

    again = open_model(MODEL, "pretrained")
    again.float_model()
    assert len(hub.requests) == 1 and "url" not in again.weights_info()["verified"]  # a cache hit
    assert partials(tmp_path / "torch_home") == []


def test_a_file_that_does_not_match_its_name_is_rejected_and_nothing_kept(hub, tmp_path):
    with pytest.raises(WeightsHashMismatch) as caught:
        open_model(MODEL, "pretrained").float_model()
    message = str(caught.value)
    assert "\n" not in message and "f37072fd" in message and "nothing was cached" in message
    assert hub.requests == [(URL_PATH, None)]
    checkpoints = tmp_path / "torch_home" / "hub" / "checkpoints"
    assert not os.path.exists(cache_path(default_weights(MODEL)))
    assert [p.name for p in checkpoints.iterdir()] == [".qbench-locks"] and partials(tmp_path / "torch_home") == []


def test_offline_keeps_the_one_line_error_and_never_asks(hub, monkeypatch):
    monkeypatch.setenv("QBENCH_OFFLINE", "1")
    with pytest.raises(WeightsNotFound) as caught:
        open_model(MODEL, "pretrained").float_model()
    message = str(caught.value)
    assert "\n" not in message and "QBENCH_OFFLINE" in message and default_weights(MODEL).url in message
    assert hub.requests == []


def test_two_workers_want_the_same_file_at_once(hub, tmp_path, monkeypatch, learned):  # noqa: F811
    manifest = stand_in_manifest(tmp_path, learned.checkpoint)
    hub.pace_s = 0.002
    code = ("from qbench.runner.registry.hub import ensure_cached; from qbench.runner.registry.weights import "
            "default_weights; print(ensure_cached(default_weights('resnet18'), progress=False)[1]['downloaded'])")
    env = {**os.environ, "QBENCH_WEIGHTS_MANIFEST": str(manifest)}
    workers = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env) for _ in range(2)]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    assert sorted(out.strip().splitlines()[-1] for out, _ in outputs) == ["False", "True"]
    assert hub.count(URL_PATH) == 1 and partials(tmp_path / "torch_home") == []


def test_qbench_run_offline_fails_the_case_with_the_one_line_reason(hub, tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text('[suite]\nname = "s"\n[defaults]\nweights = ["pretrained"]\n[[matrix]]\nmodels = ["resnet18"]\n'
                     'modes = ["fp32"]\n[accuracy]\nimages = 0\n[measure]\nmin_time_s = 0.01\nmin_rounds = 1\n'
                     'warmup_rounds = 0\n')
    done = subprocess.run([sys.executable, "-m", "qbench", "run", "--suite", str(suite), "--results",
                           str(tmp_path / "results"), "--offline", "--no-peaks", "--no-progress", "--no-cache"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for path in (tmp_path / "results").rglob("*.jsonl") for line in open(path)]
    cases = [r for r in records if r.get("kind") == "case"]
    assert [r["status"] for r in cases] == ["failed"]
    assert "QBENCH_OFFLINE is set" in cases[0]["reason"] and "\n" not in cases[0]["reason"]
    assert hub.requests == []
