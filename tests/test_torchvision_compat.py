"""qbench.runner.registry.torchvision_compat, each scenario in a fresh interpreter: torch operator registration is process-wide.
The scenarios run side by side, and the installed torchvision files are fingerprinted around them."""

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# This machine: torchvision's CUDA-built extension cannot load next to the CPU torch.
FAILED_EXTENSION = """
    import json, torch
    from qbench.runner.registry import torchvision_compat as compat
    tv = compat.import_torchvision()
    model = tv.models.resnet18()
    with torch.inference_mode():
        shape = list(model.eval()(torch.zeros(1, 3, 64, 64)).shape)
    print(json.dumps({"status": compat.compat_status(), "again": compat.import_torchvision() is tv,
                      "module": tv.__name__, "shape": shape,
                      "schemas": [str(torch.ops.torchvision.nms.default._schema),
                                  str(torch.ops.torchvision.qnms.default._schema)]}))
"""

# An extension that loads, simulated: it registers working nms/qnms kernels, as torchvision's _C does.
LOADING_EXTENSION = """
    import json, torch
    from qbench.runner.registry import torchvision_compat as compat

    simulated = []

    def loader():
        library = torch.library.Library("torchvision", "DEF")
        library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        library.impl("nms", lambda dets, scores, iou: torch.tensor([42]), "CPU")
        library.impl("qnms", lambda dets, scores, iou: torch.tensor([43]), "CPU")
        simulated.append(library)

    tv = compat.import_torchvision(loader=loader)
    kept = torch.ops.torchvision.nms(torch.zeros(2, 4), torch.zeros(2), 0.5).tolist()
    print(json.dumps({"status": compat.compat_status(), "nms": kept, "qbench_declared": compat._library is not None,
                      "module": tv.__name__, "builds": type(tv.models.resnet18()).__name__}))
"""


def start_python(code: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def last_json_line(process: subprocess.Popen) -> dict:
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


def fingerprint(folder: Path) -> dict:
    """sha256 of every installed torchvision file outside __pycache__."""
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file() and "__pycache__" not in path.parts}


@pytest.fixture(scope="module")
def scenarios() -> dict:
    folder = Path(importlib.util.find_spec("torchvision").origin).parent
    before = fingerprint(folder)
    processes = {"failed": start_python(FAILED_EXTENSION), "loading": start_python(LOADING_EXTENSION)}
    results = {name: last_json_line(process) for name, process in processes.items()}
    return {**results, "before": before, "after": fingerprint(folder)}


def test_failed_extension_declares_schemas_and_models_build(scenarios):
    result = scenarios["failed"]
    assert result["status"]["torchvision_ops"] == "declared-schemas"
    assert "_C" in result["status"]["extension_error"]
    assert "\n" not in result["status"]["extension_error"]
    assert result["again"] and result["module"] == "torchvision"
    assert result["shape"] == [1, 1000]
    assert result["schemas"] == ["torchvision::nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
                                 "torchvision::qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"]


def test_loading_extension_is_used_as_is(scenarios):
    result = scenarios["loading"]
    assert result["status"] == {"torchvision_ops": "native", "extension_error": None}
    assert result["nms"] == [42]
    assert result["qbench_declared"] is False
    assert result["module"] == "torchvision" and result["builds"] == "ResNet"


def test_installed_torchvision_files_are_not_modified(scenarios):
    before = scenarios["before"]
    assert {"__init__.py", "_meta_registrations.py", "extension.py"} <= before.keys()
    assert scenarios["after"] == before
