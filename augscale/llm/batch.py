"""What every generation engine returns, and the batch plumbing they share.

Both engines (:class:`augscale.llm.hf.HFGenerator`, :class:`augscale.llm.endpoint.EndpointGenerator`)
take a Ray Data batch with a prompt column and return it with one row per sample
(``num_samples`` rows per prompt; one when greedy) and these columns added:

    {"sample_index": 0, "prediction": "Natalia sold 48/2 = 24 ... #### 72<END_A>",
     "output_tokens": 31, "prompt_tokens": 54, "finish_reason": "stop", "error": None}

``prediction`` is the raw generated text (the end token kept when generated); ``finish_reason``
is ``stop`` (end token or stop string), ``length`` (max new tokens) or ``error``; ``error`` is
None or why the generation failed (a counted failure, never an exception).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

GENERATION_COLUMNS: tuple[str, ...] = (
    "sample_index", "prediction", "output_tokens", "prompt_tokens", "finish_reason", "error",
)


def column(batch: Mapping[str, Any], name: str) -> list:
    """One column of a batch (numpy arrays or lists) as a Python list.

    Raises:
        KeyError: the column is missing (names the columns that are there).
    """
    if name not in batch:
        raise KeyError(f"batch has no column {name!r}; it has {sorted(batch)}")
    values = batch[name]
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def num_rows(batch: Mapping[str, Any]) -> int:
    return len(next(iter(batch.values()))) if batch else 0


def expand(batch: Mapping[str, Any], samples: list[list[dict[str, Any]]]) -> dict[str, np.ndarray]:
    """Input batch + per-row lists of sample dicts -> a batch with one row per sample.

    Input columns are repeated for each of their row's samples; the samples' keys become
    columns (absent keys are None).
    """
    counts = np.array([len(s) for s in samples], dtype=np.int64)
    out: dict[str, np.ndarray] = {}
    for name, values in batch.items():
        arr = values if isinstance(values, np.ndarray) else np.array(values, dtype=object)
        out[name] = np.repeat(arr, counts, axis=0)
    flat = [s for row in samples for s in row]
    keys = list(dict.fromkeys(k for s in flat for k in s)) or list(GENERATION_COLUMNS)
    for k in keys:
        vals = [s.get(k) for s in flat]
        if vals and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in vals):
            out[k] = np.array(vals, dtype=np.int64)
        elif vals and all(isinstance(v, float) for v in vals):
            out[k] = np.array(vals, dtype=np.float64)
        else:
            arr = np.empty(len(vals), dtype=object)
            arr[:] = vals
            out[k] = arr
    return out


def failed_sample(error: str, prompt_tokens: int = 0, sample_index: int = 0) -> dict[str, Any]:
    """The row of a generation that failed: empty prediction, the reason in ``error``."""
    return {"sample_index": sample_index, "prediction": "", "output_tokens": 0, "prompt_tokens": prompt_tokens,
            "finish_reason": "error", "error": error}
