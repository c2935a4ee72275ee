"""Checkpoints: an HF folder anyone can load, plus the DeepSpeed state to resume from.

One checkpoint folder::

    epoch_002/
      config.json generation_config.json model.safetensors tokenizer.json ...   (rank 0)
      trainer_state.json          LoopState: epoch, step, tokens, per-epoch metrics
      deepspeed/state/...         every rank's model and optimizer partition, lr schedule

Each worker writes its own part into a local folder and reports it; Ray Train merges the
parts into one folder in the run's storage. On restart every worker reads the merged folder.
"""

from __future__ import annotations

import json
from pathlib import Path

from augscale.train.loop import LoopState
from augscale.train.model import save_hf_checkpoint

DS_DIR, DS_TAG = "deepspeed", "state"


def save_checkpoint(folder: Path | str, engine, tokenizer, state: LoopState, *, rank: int) -> Path:
    """Write this rank's part of a checkpoint (collective: every rank must call it)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if engine.zero_optimization_partition_weights():  # ZeRO-3: gather the full weights on rank 0
        state_dict = engine._zero3_consolidated_16bit_state_dict()
    else:
        state_dict = engine.module.state_dict() if rank == 0 else None
    if rank == 0:
        save_hf_checkpoint(folder, engine.module, tokenizer, state_dict=state_dict, extra=state.to_dict())
    engine.save_checkpoint(str(folder / DS_DIR), tag=DS_TAG, client_state={"loop": state.to_dict()})
    return folder


def load_checkpoint(folder: Path | str, engine) -> LoopState:
    """Restore the model, optimizer and lr schedule from a checkpoint; return where training was.

    Raises:
        FileNotFoundError: the folder holds no DeepSpeed state.
    """
    folder = Path(folder)
    if not (folder / DS_DIR / DS_TAG).is_dir():
        raise FileNotFoundError(f"{folder}: no DeepSpeed state to resume from ({DS_DIR}/{DS_TAG} missing)")
    path, client = engine.load_checkpoint(str(folder / DS_DIR), tag=DS_TAG, load_optimizer_states=True,
                                          load_lr_scheduler_states=True)
    if path is None:
        raise FileNotFoundError(f"{folder}: DeepSpeed could not load {DS_DIR}/{DS_TAG}")
    loop = (client or {}).get("loop") or json.loads((folder / "trainer_state.json").read_text())
    return LoopState(**loop)
