"""hfbatch's version, read once from the installed package's metadata (pyproject.toml is its one home)."""

from __future__ import annotations

import functools

__all__ = ["user_agent", "version"]


@functools.cache
def version() -> str:
    """The installed version of hfbatch, or "0+unknown" when it runs from an uninstalled tree."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("hfbatch")
    except PackageNotFoundError:
        return "0+unknown"


@functools.cache
def user_agent() -> str:
    """The User-Agent header hfbatch sends."""
    return f"hfbatch/{version()}"
