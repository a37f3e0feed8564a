"""env: sides of `qbench ab` and `qbench bisect`: requirement specs, what an environment holds and its cache key, the
origin check of pinned versions, the sharing of files between environments, and a real comparison of torchao 0.17.0
against 0.18.0 in virtualenvs built from PyPI (cached in ~/.cache/qbench/envs, so only the first run builds them)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qbench.errors import ConfigError, InfraError
from qbench.launch.ab_envs import _share_files, parse_requirements, pinned_versions, plan_env, requirement_name
from qbench.launch.ab_sides import CodeSide, parse_side, source_root
from tests.factories import ab_suite_text

SUITE = ab_suite_text("ab-env-tiny", "tests.tiny_models:convnet", timeout_s=300.0)


def test_requirements_are_normalized_sorted_and_read_from_files(tmp_path):
    assert parse_requirements("TorchAO==0.17.0  numpy<3") == ("numpy<3", "torchao==0.17.0")
    assert parse_requirements("numpy<3 torchao==0.17.0") == parse_requirements("torchao==0.17.0 numpy<3")
    (tmp_path / "req.txt").write_text("# the pins\ntorch_ao==0.17.0  # the one\n\nPsUtil>=5\n")
    assert parse_requirements("@req.txt", base=tmp_path) == ("psutil>=5", "torch-ao==0.17.0")
    assert requirement_name("Torch_AO.x>=1") == "torch-ao-x"
    assert pinned_versions(("numpy<3", "torchao==0.17.0")) == {"torchao": "0.17.0"}
    for bad in ("", "--index-url=http://x", "@missing.txt", "==1"):
        with pytest.raises(ConfigError):
            parse_requirements(bad, base=tmp_path)


def test_an_environment_pins_what_the_spec_does_not_name(tmp_path):
    plan = plan_env(parse_requirements("torchao==0.17.0"), source_root(), cache=tmp_path)
    assert "torch==2.13.0" in plan.constraints and not any(c.startswith("torchao") for c in plan.constraints)
    assert "torchao==0.17.0" in plan.install and any(r.startswith("torch>=") for r in plan.install)
    assert {requirement_name(r) for r in plan.install} == {"torch", "torchvision", "torchao", "psutil"}
    assert plan.path.parent == tmp_path and len(plan.key) == 64 and not plan.ready()
    assert plan_env(parse_requirements("torchao==0.17.0"), source_root(), cache=tmp_path).key == plan.key
    other = plan_env(parse_requirements("torchao==0.18.0"), source_root(), cache=tmp_path)
    assert other.key != plan.key
    torch = plan_env(parse_requirements("torch==2.12.0"), source_root(), cache=tmp_path)
    assert "torch==2.12.0" in torch.install and not any(c.startswith("torch==") for c in torch.constraints)


def test_env_sides_parse_and_their_pins_are_checked(tmp_path):
    side = parse_side("env:torchao==0.17.0")
    assert side.kind == "env" and side.requirements == ("torchao==0.17.0",)
    with pytest.raises(ConfigError, match="side 'env:'"):
        parse_side("env:")
    code = CodeSide("A", side, code_root=tmp_path, commit=None, probe_dir=tmp_path, interpreter="/x/bin/python")
    assert code.python == "/x/bin/python" and code.env()["QBENCH_AB_PACKAGES"] == "torchao"
    origin = {"qbench_file": str(tmp_path / "qbench" / "__init__.py"), "packages": {"torchao": "0.17.0"}}
    code.check_origin(origin)
    with pytest.raises(InfraError, match="runs torchao 0.18.0, not the pinned"):
        code.check_origin({**origin, "packages": {"torchao": "0.18.0"}})


def test_large_identical_files_are_shared_by_hard_links(tmp_path):
    for env in ("a", "b"):
        (tmp_path / env / "lib").mkdir(parents=True)
        (tmp_path / env / "lib" / "big.so").write_bytes(b"x" * 10000)
        (tmp_path / env / "lib" / "small.py").write_text("y")
    assert _share_files(tmp_path / "a", tmp_path / "store") == 0
    assert _share_files(tmp_path / "b", tmp_path / "store") == 10000
    assert (tmp_path / "a/lib/big.so").stat().st_ino == (tmp_path / "b/lib/big.so").stat().st_ino
    assert (tmp_path / "a/lib/small.py").stat().st_ino != (tmp_path / "b/lib/small.py").stat().st_ino
    assert (tmp_path / "b/lib/big.so").read_bytes() == b"x" * 10000


@pytest.mark.slow
def test_ab_between_two_torchao_releases_in_built_environments(tmp_path):
    """Real: builds (or reuses) virtualenvs with torchao 0.17.0 and 0.18.0 from PyPI and torch at the local CPU
    build, then compares them; each side must report its own torchao and run this qbench under its own Python."""
    (tmp_path / "suite.toml").write_text(SUITE)
    env = {**os.environ, "PYTHONPATH": str(source_root())}
    done = subprocess.run([sys.executable, "-m", "qbench", "ab", "--suite", str(tmp_path / "suite.toml"), "--a",
                           "env:torchao==0.17.0", "--b", "env:torchao==0.18.0", "--pairs", "8", "--format", "json"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=3000)
    assert done.returncode in (0, 1), done.stderr
    result = json.loads(done.stdout)
    for label, version in (("A", "0.17.0"), ("B", "0.18.0")):
        side = result["sides"][label]
        assert side["packages"]["torchao"] == version and side["torch"].startswith("2.13.0")
        assert "/qbench/envs/" in side["python"] and Path(side["qbench_file"]).is_relative_to(source_root())
    (case,) = result["cases"]
    assert case["status"] == "compared" and case["outputs"]["sqnr_db"] == 200.0  # fp32: torchao is not involved
    assert result["sides"]["A"]["python"] != result["sides"]["B"]["python"]
