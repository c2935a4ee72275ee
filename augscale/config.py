"""Every YAML config of the project, as pydantic models, and the one loader that checks them.

Configs are parsed and checked once, at the edge (the CLI), then unpacked into plain
arguments. Unknown keys are errors; a bad file gets a message naming the file, the key
path and the allowed values. ``--set key.path=value`` overrides any key.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from augscale.errors import AugscaleError

M = TypeVar("M", bound=BaseModel)


class ConfigError(AugscaleError, ValueError):
    """A config that cannot be used; the message says where and how to fix it."""


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


# ---------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------
def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=1e-4"`` -> (["train", "lr"], 0.0001); the value is read as YAML.

    Raises:
        ConfigError: no ``=`` or an empty key.
    """
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key.path=value")
    key, value = text.split("=", 1)
    if not key.strip():
        raise ConfigError(f"--set {text!r}: empty key")
    return key.strip().split("."), yaml.safe_load(value) if value.strip() else None


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Set each ``key.path=value`` in a nested dict (creating intermediate dicts)."""
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            if isinstance(node, list) and part.isdigit():
                node = node[int(part)]
                continue
            if not isinstance(node.get(part), dict) and not isinstance(node.get(part), list):
                node[part] = {}
            node = node[part]
        last = path[-1]
        if isinstance(node, list) and last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value
    return data


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class that owns the field at ``loc`` (for listing allowed keys)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part)
        if field is None:
            return current
        current = _unwrap(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """The model inside ``Optional[M]``, ``list[M]``, ``dict[str, M]`` annotations."""
    args = getattr(annotation, "__args__", None)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in args or ():
        inner = _unwrap(arg)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner
    return annotation


def format_validation_error(source: str, model: type[BaseModel], err: ValidationError) -> str:
    lines = [f"{source}: invalid {model.__name__}"]
    for e in err.errors():
        loc = e["loc"]
        key = ".".join(str(p) for p in loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            owner = _model_at(model, loc[:-1])
            allowed = sorted(owner.model_fields) if owner else []
            near = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f" Did you mean {near[0]!r}?" if near else ""
            lines.append(f"  {key}: unknown key.{hint} Allowed keys here: {', '.join(allowed)}")
        elif e["type"] == "missing":
            lines.append(f"  {key}: required key missing")
        elif e["type"] == "value_error":
            lines.append(f"  {key}: {e['msg'].removeprefix('Value error, ')}")
        else:
            lines.append(f"  {key}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def validate_config(model: type[M], data: dict[str, Any], source: str = "<config>") -> M:
    """Validate a dict as ``model``.

    Raises:
        ConfigError: the message names the source, each key path and the allowed values or keys.
    """
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(source, model, e)) from None


def load_config(path: Path | str, model: type[M], overrides: list[str] | tuple[str, ...] = ()) -> M:
    """Read a YAML file, apply ``--set`` overrides, validate.

    Raises:
        ConfigError: unreadable file, YAML syntax error (with line), or invalid content.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror})") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    data = apply_overrides(data, overrides)
    return validate_config(model, data, str(path))


def config_kind(path: Path | str) -> str:
    """Which model a config file is for: its ``kind`` key, else guessed from its folder."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    if isinstance(data, dict) and "kind" in data:
        return str(data["kind"])
    parent = Path(path).parent.name
    return {"augment": "augment", "train": "train", "model": "model", "eval": "eval",
            "experiments": "ablate"}.get(parent, "ablate")


# ---------------------------------------------------------------------------------------------
# shared pieces
# ---------------------------------------------------------------------------------------------
TaskName = str  # validated against the registry where it is used (lists valid names)


class TaskConfig(Strict):
    """Which task, and for ``jsonl`` its columns."""

    name: str = Field("gsm8k", description="gsm8k, viggo, sql or jsonl")
    input_col: str | None = None
    target_col: str | None = None
    context_col: str | None = None
    dataset_name: str | None = None

    @model_validator(mode="after")
    def _known(self) -> "TaskConfig":
        from augscale.tasks import task_names, unknown_name_message

        if self.name not in task_names():
            raise ValueError(unknown_name_message("task", self.name, task_names()))
        return self

    def build(self):
        """The Task object."""
        from augscale.tasks import get_task

        if self.name != "jsonl":
            return get_task(self.name)
        params = {k: v for k, v in {"input_col": self.input_col, "target_col": self.target_col,
                                    "context_col": self.context_col, "name": self.dataset_name}.items() if v}
        return get_task("jsonl", **params)


class DataSourceConfig(Strict):
    """Where the seed snapshot comes from: a snapshot folder, or prepared on demand."""

    snapshot: str | None = Field(None, description="a snapshot folder; default: prepare the task's data")
    data_dir: str | None = Field(None, description="raw files; default AUGSCALE_DATA_DIR, else the Hub")
    cache_dir: str | None = Field(None, description="default AUGSCALE_CACHE_DIR, else the user cache")


# ---------------------------------------------------------------------------------------------
# augscale model init
# ---------------------------------------------------------------------------------------------
class ModelInitConfig(Strict):
    """A small Llama-architecture model and a BPE tokenizer trained on a snapshot's text."""

    kind: Literal["model"] = "model"
    task: TaskConfig = TaskConfig()
    data: DataSourceConfig = DataSourceConfig()
    out_dir: str = Field("runs/models/tiny-llama", description="where the HF checkpoint folder goes")
    vocab_size: int = Field(8000, ge=300)
    hidden_size: int = Field(128, ge=8)
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(4, ge=1)
    num_kv_heads: int | None = Field(None, ge=1)
    intermediate_size: int | None = None
    max_position_embeddings: int = Field(512, ge=16)
    tokenizer_max_texts: int = Field(20000, ge=10, description="training texts sampled for the BPE")
    seed: int = 0

    @model_validator(mode="after")
    def _heads(self) -> "ModelInitConfig":
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})")
        kv = self.num_kv_heads or self.num_heads
        if self.num_heads % kv:
            raise ValueError(f"num_heads ({self.num_heads}) must be divisible by num_kv_heads ({kv})")
        return self


# ---------------------------------------------------------------------------------------------
# augscale augment  (issue: augment pipeline; LLM strategies add `generator`)
# ---------------------------------------------------------------------------------------------
# >>> augment models

# ---------------------------------------------------------------------------------------------
# augscale train
# ---------------------------------------------------------------------------------------------
# >>> train models

# ---------------------------------------------------------------------------------------------
# augscale evaluate
# ---------------------------------------------------------------------------------------------
# >>> evaluate models

# ---------------------------------------------------------------------------------------------
# augscale ablate / demo
# ---------------------------------------------------------------------------------------------
# >>> experiment models

CONFIG_MODELS: dict[str, type[BaseModel]] = {
    "model": ModelInitConfig,
}
