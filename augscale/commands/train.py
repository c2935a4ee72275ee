"""``augscale train``: full fine-tuning with Ray Train + DeepSpeed, streamed from Ray Data."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        config: Path = typer.Argument(..., help="Train config YAML (see configs/train/gsm8k_tiny.yaml)."),
        set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a key: --set data.size=2000."),
        out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="The run folder (overrides out_dir)."),
        progress: Optional[bool] = typer.Option(None, "--progress/--no-progress",
                                                help="Progress bar (default: the config's progress)."),
        as_json: bool = typer.Option(False, "--json", help="Print a one-line JSON summary as the last line."),
    ) -> None:
        """Fine-tune every parameter of a causal LM on a mixture of original and augmented rows.

        Ray Data reads and tokenizes the rows in curriculum order and streams them to Ray Train
        workers running DeepSpeed (ZeRO-2/3). Checkpoints in Hugging Face format each epoch (the
        best by validation loss is kept); metrics.jsonl and manifest.json in the run folder. A
        worker that dies is restarted from the last checkpoint. The --json summary names the
        `final` and `best` checkpoint folders and the `metrics` file.
        """
        from augscale.cli import emit_json
        from augscale.config import TrainConfig, load_config
        from augscale.train.run import train_from_config

        cfg = load_config(config, TrainConfig, set_ or [])
        summary = train_from_config(cfg, out_dir=out_dir, progress=progress)
        typer.echo(f"trained {summary['optimizer_steps']} steps on {summary['train_tokens']:,} tokens in "
                   f"{summary['train_seconds']:.0f} s; final {summary['final']}; best {summary['best']} "
                   f"(valid loss {summary.get('best_valid_loss')})", err=as_json)
        if as_json:
            emit_json(summary)
