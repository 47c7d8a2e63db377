"""The models hfbatch knows by name: short aliases, the defaults, and the list shown when the Hub cannot be asked.

The fallback list is what `hfbatch models` prints when the Hub does not answer; it is a
snapshot, not live data, and a `ModelList` says which of the two a caller got.
"""

from __future__ import annotations

from dataclasses import dataclass

from hfbatch.errors import APIError

__all__ = ["DEFAULT_MODEL", "DEFAULT_VISION_MODEL", "FALLBACK_MODELS", "MODEL_ALIASES", "VISION_MODELS", "ModelList"]

DEFAULT_MODEL = "openai/gpt-oss-120b"
DEFAULT_VISION_MODEL = "meta-llama/Llama-3.2-11B-Vision-Instruct"
VISION_MODELS: tuple[str, ...] = (
    "meta-llama/Llama-3.2-11B-Vision-Instruct",
    "Qwen/Qwen2-VL-7B-Instruct",
)
MODEL_ALIASES: dict[str, str] = {
    "gpt-oss-120b": "openai/gpt-oss-120b",
    "llama-3": "meta-llama/Llama-3.3-70B-Instruct",
    "llama-3.3-70b": "meta-llama/Llama-3.3-70B-Instruct",
    "command-r-plus": "CohereForAI/c4ai-command-r-plus-08-2024",
    "deepseek-r1": "deepseek-ai/DeepSeek-R1",
    "qwq-32b": "Qwen/QwQ-32B",
    "nemotron-70b": "nvidia/Llama-3.1-Nemotron-70B-Instruct-HF",
    "qwen-2.5-coder-32b": "Qwen/Qwen2.5-Coder-32B-Instruct",
    "llama-3.2-11b": "meta-llama/Llama-3.2-11B-Vision-Instruct",
    "mistral-nemo": "mistralai/Mistral-Nemo-Instruct-2407",
    "phi-3.5-mini": "microsoft/Phi-3.5-mini-instruct",
    "qwen-2-vl-7b": "Qwen/Qwen2-VL-7B-Instruct",
    "gemma-3-27b": "google/gemma-3-27b-it",
}
FALLBACK_MODELS: tuple[str, ...] = (
    "openai/gpt-oss-120b",
    "meta-llama/Llama-3.3-70B-Instruct",
    "deepseek-ai/DeepSeek-R1",
    "Qwen/QwQ-32B",
    "Qwen/Qwen2.5-Coder-32B-Instruct",
    "meta-llama/Llama-3.2-11B-Vision-Instruct",
    "Qwen/Qwen2-VL-7B-Instruct",
    "google/gemma-3-27b-it",
)


@dataclass(frozen=True, slots=True)
class ModelList:
    """Model ids, and where they came from: `live` (the Hub or the server listed them), or the fallback list."""

    models: tuple[str, ...]
    live: bool
    #: Why the live list could not be had, when `live` is false.
    error: APIError | None = None
