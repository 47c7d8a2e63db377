"""A simulated Hugging Face Hub and router for tests, the `hfbatch sim` command and job files.

It serves provider mappings, model lists and an OpenAI-compatible chat endpoint over real
HTTP, with per-provider latency and injected faults, and counts what each provider was asked.
"""

from __future__ import annotations

from hfbatch.sim.app import make_app
from hfbatch.sim.config import (
    FAULT_KINDS,
    Fault,
    SimConfig,
    SimModel,
    SimProvider,
    default_sim_config,
)
from hfbatch.sim.configfile import load_sim_config, sim_config_from_dict
from hfbatch.sim.replies import SimReply, reply_for
from hfbatch.sim.server import SimServer, serve
from hfbatch.sim.state import ProviderStats, SimState

__all__ = [
    "FAULT_KINDS",
    "Fault",
    "ProviderStats",
    "SimConfig",
    "SimModel",
    "SimProvider",
    "SimReply",
    "SimServer",
    "SimState",
    "default_sim_config",
    "load_sim_config",
    "make_app",
    "reply_for",
    "serve",
    "sim_config_from_dict",
]
