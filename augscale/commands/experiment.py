"""``augscale ablate``, ``augscale report`` and ``augscale demo``: scaling-by-data experiments."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

SET_HELP = "Override a config key: --set arms.seeds=[0,1] (repeatable)."


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _setup_env() -> None:
    """On a machine without GPUs, DeepSpeed must be told to use its CPU accelerator (workers inherit it)."""
    import os

    try:
        import torch

        if not torch.cuda.is_available():
            os.environ.setdefault("DS_ACCELERATOR", "cpu")
    except ImportError:
        pass


def register(app: typer.Typer) -> None:
    @app.command("ablate")
    def ablate_cmd(
        config: Path = typer.Argument(..., help="Ablation config YAML (see configs/experiments/)."),
        set_: Optional[List[str]] = typer.Option(None, "--set", help=SET_HELP),
        out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="The run folder (overrides out_dir)."),
    ) -> None:
        """Train and evaluate every arm of a scaling-by-data grid, then write the report.

        Arms: data sizes (multiples of the original size, or absolute) x strategies x curricula x
        seeds. Sizes up to the original use nested subsets of the originals; larger sizes add nested
        augmented rows. A rerun reuses finished arms. The last line printed is report.md's path.
        """
        from augscale.config import AblateConfig, load_config
        from augscale.experiment.runner import run_ablation

        overrides = list(set_ or []) + ([f"out_dir={out_dir}"] if out_dir else [])
        cfg = load_config(config, AblateConfig, overrides)
        _setup_env()
        report = run_ablation(cfg, config_dir=config.parent, log=_log)
        print(report)

    @app.command("report")
    def report_cmd(
        run_dir: Path = typer.Argument(..., help="An ablation run folder (holds config.yaml and arms/)."),
    ) -> None:
        """Rebuild results.csv, results.md, scaling.png and report.md from an ablation's finished arms."""
        from augscale.experiment.runner import report_only

        print(report_only(run_dir))

    @app.command("demo")
    def demo_cmd(
        set_: Optional[List[str]] = typer.Option(None, "--set", help=SET_HELP),
        out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="The run folder (default runs/demo)."),
        show_config: bool = typer.Option(False, "--show-config", help="Print the embedded config and exit."),
    ) -> None:
        """The whole flow, small, on the embedded defaults: gsm8k, substitute augmentation, a small model
        built from config, three arms (1,000 originals; 2,000 and 4,000 with augmented rows), evaluation
        on 200 test items, and the report. Reads raw data from $AUGSCALE_DATA_DIR, else the Hub.
        The last line printed is report.md's path.
        """
        from importlib.resources import files

        from augscale.config import AblateConfig, load_config
        from augscale.experiment.runner import run_ablation

        path = Path(str(files("augscale") / "defaults" / "demo.yaml"))
        if show_config:
            print(path.read_text())
            return
        overrides = list(set_ or []) + ([f"out_dir={out_dir}"] if out_dir else [])
        cfg = load_config(path, AblateConfig, overrides)
        _setup_env()
        report = run_ablation(cfg, config_dir=path.parent, log=_log)
        print(report)
