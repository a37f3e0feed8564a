"""Shared pytest fixtures; plain helpers live in tests/factories.py (headless Chromium: tests/browser.py)."""

import pytest

from tests.browser import ensure_chromium
from tests.factories import tiny_suite_text


@pytest.fixture(scope="session")
def chromium():
    """Debian's chromium, installed with apt-get when missing (the test machines run as root)."""
    return ensure_chromium()


@pytest.fixture
def tiny_suite(tmp_path):
    """The tiny suite (tests.factories.tiny_suite_text() defaults) written to tmp_path/tiny.toml."""
    path = tmp_path / "tiny.toml"
    path.write_text(tiny_suite_text())
    return path
