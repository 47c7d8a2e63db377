"""Which model a row goes to, and through which providers.

A job names one model, or none: then each row of an OpenAI batch input names its own in
`body.model`, and a job may mix models. Each model is resolved (alias, the Hub's providers)
once, the first time a row needs it; its providers join the pool as they are met.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from hfbatch.client import HuggingFaceAPI
from hfbatch.provider_pool import ProviderPool

__all__ = ["Routes"]


class Routes:
    """The resolved model and provider order of each model the rows name, looked up once each."""

    def __init__(self, api: HuggingFaceAPI, pool: ProviderPool, providers: Sequence[str] = ()) -> None:
        self.api = api
        self.pool = pool
        #: The job's `--providers`: every model goes through them when given.
        self.providers = tuple(providers)
        self._found: dict[str, tuple[str, list[str]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def resolve(self, name: str) -> tuple[str, list[str]]:
        """The full model id of `name` and its providers in order; raises the APIError that says why not.

        A failed lookup is not remembered: the next row asks again.
        """
        found = self._found.get(name)
        if found is not None:
            return found
        async with self._locks.setdefault(name, asyncio.Lock()):
            if (found := self._found.get(name)) is not None:
                return found
            model = self.api.get_model(name)
            providers = list(self.providers) or await self.api.providers_for(model)
            self.pool.add(providers)
            self._found[name] = (model, providers)
            return model, providers
