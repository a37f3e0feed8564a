"""The layout's rules (docs/architecture.md): only qbench/runner imports torch, the parent never loads it, commands
are thin and independent, modules stay small."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "qbench"
TORCH_PACKAGES = ("torch", "torchvision", "torchao")
MAX_LINES = 410


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "vendor" in path.parts:
            continue
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import statement, at module level or inside functions."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, node.lineno))
            found += [(f"{node.module}.{alias.name}", node.lineno) for alias in node.names]
    return found


def test_only_the_runner_imports_torch_torchvision_or_torchao():
    offenders = [f"{path.relative_to(ROOT)}:{line} imports {name}"
                 for module, path in modules().items() if not module.startswith("qbench.runner")
                 for name, line in imports(path) if name.split(".")[0] in TORCH_PACKAGES]
    assert offenders == []


def test_nothing_outside_the_runner_imports_it_except_by_entry_string():
    offenders = [f"{path.relative_to(ROOT)}:{line} imports {name}"
                 for module, path in modules().items() if not module.startswith("qbench.runner")
                 for name, line in imports(path) if name.startswith("qbench.runner")]
    assert offenders == []


def test_commands_import_no_other_command():
    commands = {m for m in modules() if m.startswith("qbench.cli.") and m != "qbench.cli.common"}
    offenders = [f"{module} imports {name}" for module in commands for name, _ in imports(modules()[module])
                 if name in commands and name != module]
    assert offenders == []


def test_the_command_table_names_every_command_module_with_its_own_help():
    from qbench.cli import COMMANDS, load_command

    files = {path.stem for path in (PACKAGE / "cli").glob("*.py")} - {"__init__", "common"}
    assert set(COMMANDS) == files
    for name, help_text in COMMANDS.items():
        command = load_command(name)
        assert (command.name, command.help) == (name, help_text)


def test_no_module_is_much_over_400_lines():
    long = {str(path.relative_to(ROOT)): n for path in modules().values()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_every_module_states_its_job_in_a_docstring():
    missing = [str(path.relative_to(ROOT)) for path in modules().values()
               if not ast.get_docstring(ast.parse(path.read_text()))]
    assert missing == []


PROBE = """
import json, sys
from qbench.cli import main
code = main(sys.argv[1:])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "torchao"))
runner = sorted(m for m in sys.modules if m.startswith("qbench.runner"))
commands = sorted(m for m in sys.modules if m.startswith("qbench.cli.") and m != "qbench.cli.common")
print(json.dumps({"code": code, "heavy": heavy, "runner": runner, "commands": commands}))
"""


def parent(*args, cwd=ROOT) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=cwd, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.stdout, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    from tests.factories import MACHINE, make_case, make_record
    from qbench.history.store import RunWriter

    root = tmp_path_factory.mktemp("layout") / "results"
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    for n, started in enumerate(("2026-11-20T10:00:00.000000Z", "2026-11-21T10:00:00.000000Z")):
        run_id = f"{n + 1}" * 32
        writer = RunWriter(root, MACHINE, {"run_id": run_id, "started_at": started, "suite": {"name": "t"},
                                           "machine": MACHINE, "qbench": {"commit": head}})
        for case in (make_case(mode="fp32", engine=None), make_case()):
            writer.append(make_record(case, run_id=run_id, started_at=started,
                                      qbench={"version": "0.1.0", "commit": head, "dirty": False}))
        writer.finish({"run_id": run_id, "interrupted": False})
    return root


@pytest.mark.parametrize("command", [
    ["compare", "latest~1", "latest", "--results", "{results}"], ["history", "--results", "{results}"],
    ["claims", "--results", "{results}"], ["report", "--out", "{out}", "--results", "{results}"],
    ["publish", "--html", "{out}", "--results", "{results}", "--config", "{config}"],
    ["merge", "{results}", "--into", "{out}"]])
def test_parent_side_commands_end_without_torch(command, history, tmp_path):
    args = [a.format(out=tmp_path / "out", results=history, config=_config_on_this_branch(tmp_path)) for a in command]
    found = parent(*args)
    assert found["code"] in (0, 1, 3)
    assert found["heavy"] == [] and found["runner"] == []
    assert found["commands"] == [f"qbench.cli.{command[0]}"]


def _config_on_this_branch(tmp_path) -> Path:
    """asv.conf.json showing the checked-out branch (the history's runs are at HEAD, which main may not hold)."""
    branch = subprocess.run(["git", "rev-parse", "--abbrev-ref", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    from asv.util import load_json

    config = load_json(str(ROOT / "asv.conf.json"), js_comments=True)
    config.update(repo=str(ROOT), branches=[branch], results_dir=str(tmp_path / "asv-results"),
                  html_dir=str(tmp_path / "html"))
    path = tmp_path / "asv.conf.json"
    path.write_text(json.dumps(config))
    return path


def test_help_imports_no_command_module():
    done = subprocess.run([sys.executable, "-c", "import sys\nfrom qbench.cli import main\ntry:\n    main(['--help'])\n"
                           "except SystemExit:\n    pass\nprint(sorted(m for m in sys.modules if m.startswith('qbench')))"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    loaded = eval(done.stdout.strip().splitlines()[-1])
    assert "run" in done.stdout and loaded == ["qbench", "qbench.cli", "qbench.errors"]


def test_listing_a_suite_loads_torch_only_in_the_worker(tmp_path):
    suite = tmp_path / "tiny.toml"
    suite.write_text('[suite]\nname = "tiny"\n[[matrix]]\nmodels = ["tests.tiny_models:convnet"]\n'
                     'modes = ["fp32", "static_fx"]\nengines = ["x86"]\n')
    found = parent("list", "--suite", str(suite))
    assert found["code"] == 0 and found["heavy"] == [] and found["runner"] == []
