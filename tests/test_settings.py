"""Settings from the environment: clear errors naming the variable, secrets kept out of logs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embedding.providers.local import LocalOnnxProvider, model_files
from embedding.settings import EmbeddingSettings, ModelSpec
from embedpipe.bundled_model import DEFAULT_MODEL
from embedpipe.envconfig import ConfigError
from gateway.settings import GatewaySettings
from ingestion.settings import IngestionSettings
from tests.support.jobs import SENTENCES
from tests.support.processes import REPO


def test_defaults_serve_the_bundled_local_model() -> None:
    settings = EmbeddingSettings.from_env({})
    assert [m.name for m in settings.models] == [DEFAULT_MODEL]
    assert settings.default_model == DEFAULT_MODEL and settings.grpc_port == 50051


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"EMBEDDING_GRPC_PORT": "fifty"}, "EMBEDDING_GRPC_PORT: input should be a valid integer"),
        ({"EMBEDDING_MAX_DELIVERIES": "0"}, "EMBEDDING_MAX_DELIVERIES: input should be greater"),
        ({"EMBEDDING_RETRY_BASE_S": "soon"}, "EMBEDDING_RETRY_BASE_S: input should be a valid"),
        ({"EMBEDDING_MODELS": "[{"}, "EMBEDDING_MODELS is not valid JSON"),
        ({"EMBEDDING_MODELS": "[]"}, "non-empty JSON list"),
        (
            {"EMBEDDING_MODELS": '[{"name": "m", "provider": "torch"}]'},
            "EMBEDDING_MODELS[0].provider",
        ),
        ({"EMBEDDING_MODELS": '[{"name": "m", "provider": "local", "colour": 1}]'}, "colour"),
        ({"EMBEDDING_MODELS": '[{"name": "m", "provider": "openai"}]'}, "dimensions must be set"),
        ({"EMBEDDING_DEFAULT_MODEL": "nope"}, "EMBEDDING_DEFAULT_MODEL 'nope'"),
        ({"EMBEDDING_CALLBACK_QUEUE_PATTERN": "("}, "EMBEDDING_CALLBACK_QUEUE_PATTERN"),
    ],
)
def test_a_bad_setting_is_named(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        EmbeddingSettings.from_env(env)
    assert says in str(caught.value)


def test_every_bad_setting_is_named_at_once_and_empty_means_the_default() -> None:
    env = {"GATEWAY_PORT": "99999", "GATEWAY_REQUEST_TIMEOUT_S": "0", "GATEWAY_HOST": " "}
    with pytest.raises(ConfigError) as caught:
        GatewaySettings.from_env(env)
    assert str(caught.value) == (
        "GATEWAY_PORT: input should be less than or equal to 65535 (got '99999'); "
        "GATEWAY_REQUEST_TIMEOUT_S: input should be greater than or equal to 0.001 (got '0')"
    )
    settings = IngestionSettings.from_env({"DATABASE_URL": "postgresql://db", "INGESTION_PORT": ""})
    assert settings.port == 8090 and settings.database_url == "postgresql://db"
    worker = EmbeddingSettings.from_env({"EMBEDDING_CLAIM_IDLE_MS": "5000"}).worker
    assert worker.claim_idle_ms == 5000 and worker.max_deliveries == 5


def test_an_openai_key_is_read_from_its_variable_and_never_printed() -> None:
    models = [
        {"name": "small", "provider": "openai", "dimensions": 1536, "api_key_env": "MY_KEY"},
    ]
    settings = EmbeddingSettings.from_env(
        {"EMBEDDING_MODELS": json.dumps(models), "MY_KEY": "sk-secret-123"}
    )
    (spec,) = settings.models
    assert spec.api_key == "sk-secret-123" and spec.max_batch_size == 2048
    assert "sk-secret-123" not in repr(settings)


def test_bad_configuration_exits_with_a_message_not_a_traceback() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "embedding", "serve"],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "EMBEDDING_GRPC_PORT": "x"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "configuration error: EMBEDDING_GRPC_PORT: input should be a valid integer" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr


async def test_any_directory_with_model_onnx_and_tokenizer_json_is_a_model(
    tmp_path: Path, local_provider: LocalOnnxProvider
) -> None:
    model, tokenizer = model_files(ModelSpec(name=DEFAULT_MODEL, provider="local"))
    (tmp_path / "model.onnx").symlink_to(model)
    (tmp_path / "tokenizer.json").symlink_to(tokenizer)
    custom = LocalOnnxProvider(ModelSpec(name="custom", provider="local", path=str(tmp_path)))
    await custom.load()
    try:
        assert custom.dimensions == 384
        mine = (await custom.embed(SENTENCES[:2])).vectors
        bundled = (await local_provider.embed(SENTENCES[:2])).vectors
        assert np.allclose(mine, bundled, atol=1e-5)
    finally:
        await custom.close()


async def test_a_model_directory_without_its_files_is_refused(tmp_path: Path) -> None:
    provider = LocalOnnxProvider(ModelSpec(name="empty", provider="local", path=str(tmp_path)))
    with pytest.raises(Exception, match=r"missing file .*model\.onnx"):
        await provider.load()
