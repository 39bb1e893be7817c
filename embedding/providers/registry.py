"""The model registry: served model names → loaded providers (the one factory)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from embedding.errors import EmbeddingError, ErrorCode
from embedding.providers.base import EmbeddingProvider
from embedding.providers.local import LocalOnnxProvider
from embedding.settings import EmbeddingSettings, ModelSpec


def create_provider(spec: ModelSpec) -> EmbeddingProvider:
    """The provider for one registry entry."""
    if spec.provider == "local":
        return LocalOnnxProvider(spec)
    # Imported on demand: the openai client costs a local-only worker ~30 MB of RSS.
    from embedding.providers.openai_api import OpenAIProvider

    return OpenAIProvider(spec)


class ProviderRegistry:
    """Providers by model name, with the default for requests that name none."""

    def __init__(self, providers: dict[str, EmbeddingProvider], default_model: str) -> None:
        self._providers = providers
        self.default_model = default_model

    @classmethod
    def from_settings(cls, settings: EmbeddingSettings) -> ProviderRegistry:
        providers = {spec.name: create_provider(spec) for spec in settings.models}
        return cls(providers, settings.default_model)

    def __iter__(self) -> Iterator[EmbeddingProvider]:
        return iter(self._providers.values())

    def resolve_name(self, model: str) -> str:
        """The served name a request's `model` stands for ('' means the default)."""
        return model or self.default_model

    def get(self, model: str) -> EmbeddingProvider:
        """The provider for `model`, or an error naming the served models."""
        name = self.resolve_name(model)
        provider = self._providers.get(name)
        if provider is None:
            served = ", ".join(sorted(self._providers))
            raise EmbeddingError(
                ErrorCode.UNKNOWN_MODEL, f"model: unknown model {name!r}; served: {served}"
            )
        return provider

    def has(self, model: str) -> bool:
        return self.resolve_name(model) in self._providers

    def served(self) -> list[str]:
        return sorted(self._providers)

    def healthy(self) -> bool:
        return all(p.healthy() for p in self._providers.values())

    async def load_all(self) -> None:
        await asyncio.gather(*(p.load() for p in self._providers.values()))

    async def close_all(self) -> None:
        await asyncio.gather(*(p.close() for p in self._providers.values()))
