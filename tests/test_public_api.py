"""The public surface: every name in `hfbatch.__all__` imports, the error tree is exported, the version is real."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from importlib.metadata import version

import pytest

import hfbatch
from hfbatch import errors


@pytest.mark.parametrize("name", hfbatch.__all__)
def test_every_exported_name_imports(name: str) -> None:
    """`from hfbatch import X` works for each X in __all__ (the lazy table points at a real object)."""
    module = importlib.import_module("hfbatch")
    assert getattr(module, name) is not None


def test_all_is_sorted_and_unique() -> None:
    """`__all__` is sorted and lists each name once, so drift shows in review."""
    assert hfbatch.__all__ == sorted(set(hfbatch.__all__))


def test_every_public_error_class_is_exported() -> None:
    """Each exception class in hfbatch.errors is in errors.__all__ and in hfbatch.__all__."""
    classes = {
        name
        for name, obj in vars(errors).items()
        if inspect.isclass(obj) and issubclass(obj, Exception) and obj.__module__ == errors.__name__
    }
    assert classes <= set(errors.__all__)
    assert classes <= set(hfbatch.__all__)


def test_errors_module_imports_nothing_from_hfbatch() -> None:
    """hfbatch.errors sits at the bottom of the import graph."""
    code = "import sys, hfbatch.errors; print(sorted(m for m in sys.modules if m.startswith('hfbatch.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['hfbatch.errors']"


def test_version_comes_from_the_package_metadata() -> None:
    """hfbatch.__version__ is the installed distribution's version (pyproject.toml is its one home)."""
    assert hfbatch.__version__ == version("hfbatch")


def test_each_error_class_carries_its_exit_code() -> None:
    """Usage errors exit 2, auth 3, lock 4, everything else hfbatch raises 1."""
    classes: list[type[errors.HfbatchError]] = [
        errors.JobSpecError,
        errors.AuthenticationError,
        errors.LockedError,
        errors.ServerError,
    ]
    codes = {cls: int(cls.exit_code) for cls in classes}
    assert codes == {
        errors.JobSpecError: 2,
        errors.AuthenticationError: 3,
        errors.LockedError: 4,
        errors.ServerError: 1,
    }
