"""Small builders the tests share: one model served by the providers given."""

from __future__ import annotations

from typing import Any

from hfbatch.sim import SimConfig, SimModel, SimProvider

#: The model every batch test runs.
MODEL = "org/model"


def one_model(*providers: SimProvider, model: str = MODEL, **config: Any) -> SimConfig:
    """A simulator config serving `model` through `providers`, in that order."""
    return SimConfig(models=(SimModel(model, providers),), **config)
