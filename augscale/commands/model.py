"""``augscale model``: build a small model for offline work."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    model = typer.Typer(help="Build small Llama-architecture models (for tests, CI and the demo).",
                        no_args_is_help=True)
    app.add_typer(model, name="model")

    @model.command("init")
    def init_cmd(
        config: Path = typer.Argument(..., help="Model config YAML (see configs/model/tiny.yaml)."),
        set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a key: --set hidden_size=256."),
        out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Where the checkpoint goes (overrides out_dir)."),
        as_json: bool = typer.Option(False, "--json", help="Print a one-line JSON summary as the last line."),
    ) -> None:
        """Train a byte-level BPE on a snapshot's text and save a random-init Llama as an HF checkpoint.

        The task's special tokens are single tokens; generation stops at the end token. The
        folder loads with AutoModelForCausalLM / AutoTokenizer like any Hub model.
        """
        from augscale.cli import emit_json
        from augscale.config import ModelInitConfig, load_config
        from augscale.train.model_init import init_from_config

        cfg = load_config(config, ModelInitConfig, set_ or [])
        path, info = init_from_config(cfg, out_dir=out_dir)
        typer.echo(f"saved {info['params']:,}-parameter model and {info['vocab_size']}-token tokenizer to {path}",
                   err=as_json)
        if as_json:
            emit_json({"path": str(path), **info})
