"""Shared pytest fixtures; plain helpers live in tests/factories.py."""

import pytest

from tests.factories import tiny_suite_text


@pytest.fixture
def tiny_suite(tmp_path):
    """The tiny suite (tests.factories.tiny_suite_text() defaults) written to tmp_path/tiny.toml."""
    path = tmp_path / "tiny.toml"
    path.write_text(tiny_suite_text())
    return path
