"""The README opens with the two commands users run, and CI runs the second one verbatim."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())[:2]


def test_readme_begins_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    first, second = readme_commands()
    assert text.index(first) < text.index(second) < text.index("\n## ")
    assert "qbench run --suite quick" in first
    assert "pytest" in second
    for command in (first, second):
        assert command.startswith("python3 -m venv .venv && ") and "-c constraints.txt" in command


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci


def test_constraints_pin_this_setup_and_requirements_stay_ranges():
    constraints = (ROOT / "constraints.txt").read_text()
    assert "torch==2.13.0" in constraints and "torchvision==0.28.0" in constraints
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'"torch>=[\d.]+"', pyproject) and "torch==" not in pyproject
