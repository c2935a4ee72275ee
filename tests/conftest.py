"""Shared fixtures: the raw data sets, a per-session snapshot cache, one Ray instance, a tiny model.

Tests read the raw data from ../shared/datasets (never copied into the repository).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("AUGSCALE_TEST_DATA_DIR", REPO.parent / "shared" / "datasets"))

# Workers started by Ray inherit the driver's environment: keep DeepSpeed on CPU here.
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "gsm8k" / "train.jsonl").is_file():
        pytest.fail(f"raw data sets not found at {DATA_DIR} (set AUGSCALE_TEST_DATA_DIR)")
    return DATA_DIR


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One snapshot cache for the whole session, so each task is prepared once."""
    path = tmp_path_factory.mktemp("augscale-cache")
    os.environ["AUGSCALE_CACHE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def gsm8k_snapshot(data_dir, cache_dir):
    from augscale.datasets_cache import prepare
    from augscale.tasks import get_task

    snap, _ = prepare(get_task("gsm8k"), data_dir=data_dir, cache_dir=cache_dir)
    return snap


@pytest.fixture(scope="session")
def tiny_model(gsm8k_snapshot, tmp_path_factory) -> Path:
    """A 2-layer, 64-wide Llama with a 2k-token BPE trained on gsm8k text: a real HF checkpoint."""
    from augscale.tasks import get_task
    from augscale.train.model_init import init_small_model

    task = get_task("gsm8k")
    texts = [task.train_text(r) for r in gsm8k_snapshot.scan("train").head(3000).collect().to_dicts()]
    return init_small_model(texts, task.tokens.all(), tmp_path_factory.mktemp("tiny-model"),
                            end_token=task.tokens.end_a, vocab_size=2000, hidden_size=64, num_layers=2,
                            num_heads=4, max_position_embeddings=512)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole test session (4 logical CPUs on 2 cores, so that two
    training workers and Ray Data tasks can be scheduled side by side)."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=True,
                 runtime_env={"env_vars": {"DS_ACCELERATOR": "cpu", "TOKENIZERS_PARALLELISM": "false"}})
    yield ray
    ray.shutdown()
