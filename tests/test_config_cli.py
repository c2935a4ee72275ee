"""Config loading (unknown keys, allowed values, --set) and the CLI's help on every command."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from augscale.config import CONFIG_MODELS, ConfigError, ModelInitConfig, config_kind, load_config

REPO = Path(__file__).resolve().parents[1]


def test_unknown_key_names_file_path_and_allowed_keys(tmp_path):
    cfg = tmp_path / "m.yaml"
    cfg.write_text("task:\n  name: gsm8k\nhiden_size: 64\n")
    with pytest.raises(ConfigError) as e:
        load_config(cfg, ModelInitConfig)
    msg = str(e.value)
    assert str(cfg) in msg and "hiden_size: unknown key" in msg and "Did you mean 'hidden_size'?" in msg
    assert "num_layers" in msg  # the allowed keys are listed


def test_nested_unknown_key_and_bad_value(tmp_path):
    cfg = tmp_path / "m.yaml"
    cfg.write_text("task:\n  name: gsm8k\n  colum: x\nkind: modle\n")
    with pytest.raises(ConfigError) as e:
        load_config(cfg, ModelInitConfig)
    msg = str(e.value)
    assert "task.colum: unknown key" in msg and "input_col" in msg
    assert "kind:" in msg and "'model'" in msg  # the allowed value is named


def test_unknown_task_in_config(tmp_path):
    cfg = tmp_path / "m.yaml"
    cfg.write_text("task:\n  name: gsm9k\n")
    with pytest.raises(ConfigError) as e:
        load_config(cfg, ModelInitConfig)
    assert "task: unknown task 'gsm9k'. Did you mean 'gsm8k'?" in str(e.value)


def test_yaml_syntax_error_names_line(tmp_path):
    cfg = tmp_path / "m.yaml"
    cfg.write_text("task:\n  name: gsm8k\nhidden_size: [64\n")
    with pytest.raises(ConfigError) as e:
        load_config(cfg, ModelInitConfig)
    assert str(e.value).startswith(f"{cfg}:") and "not valid YAML" in str(e.value)


def test_set_overrides_any_key(tmp_path):
    cfg = tmp_path / "m.yaml"
    cfg.write_text("task:\n  name: gsm8k\nhidden_size: 64\n")
    out = load_config(cfg, ModelInitConfig, ["hidden_size=256", "task.name=viggo", "data.data_dir=/x"])
    assert out.hidden_size == 256 and out.task.name == "viggo" and out.data.data_dir == "/x"
    with pytest.raises(ConfigError):
        load_config(cfg, ModelInitConfig, ["hidden_size"])


def test_every_config_under_configs_validates():
    files = sorted((REPO / "configs").rglob("*.yaml"))
    assert files, "no configs found"
    for path in files:
        kind = config_kind(path)
        assert kind in CONFIG_MODELS, f"{path}: no config model for kind {kind!r}"
        cfg = load_config(path, CONFIG_MODELS[kind])
        if kind == "ablate":  # the base train config and the augment config it names load too
            from augscale.config import AugmentConfig
            from augscale.experiment.runner import load_train_base

            load_train_base(cfg, path.parent)
            if cfg.augment.config:
                load_config(path.parent / cfg.augment.config, AugmentConfig)
        first = path.read_text().splitlines()[0]
        assert first.startswith("# augscale "), f"{path}: must begin with the command that runs it"


def _walk(cmd, path: list[str]):
    yield path, cmd
    if hasattr(cmd, "commands"):  # a group (typer vendors its own click classes)
        for name, sub in cmd.commands.items():
            yield from _walk(sub, path + [name])


def test_help_on_every_command_and_option():
    from augscale.cli import app

    root = typer.main.get_command(app)
    seen = 0
    for path, cmd in _walk(root, []):
        assert cmd.help or cmd.short_help, f"command {' '.join(path)} has no help"
        for param in cmd.params:
            if getattr(param, "param_type_name", "") == "option" and param.name != "help":
                assert param.help, f"option {param.opts} of {' '.join(path)} has no help"
        result = CliRunner().invoke(app, path + ["--help"])
        assert result.exit_code == 0 and "Usage" in result.output
        seen += 1
    assert seen >= 5
