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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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
class AugmentStrategyConfig(Strict):
    """One strategy: its short name, its share of ``target_size``, and its own ``params``."""

    name: str = Field(..., description="a strategy short name, e.g. substitute")
    share: float = Field(1.0, gt=0, description="relative share of target_size (shares are normalized)")
    params: dict[str, Any] = Field(default_factory=dict, description="the strategy's parameters (checked per strategy)")


class AugmentFilterConfig(Strict):
    """Dedup and decontamination of new rows (see augscale.augment.filters)."""

    near_duplicate_threshold: float = Field(0.8, gt=0, le=1, description="MinHash Jaccard at which rows are "
                                            "near duplicates")
    num_perm: int = Field(128, ge=16, description="MinHash permutations")
    shingle_words: int = Field(3, ge=1, description="words per shingle of the near-duplicate check")
    against_seeds: bool = Field(True, description="new rows must not be near duplicates of seed rows either")
    decontam_ngram: int = Field(13, ge=1, description="word n-gram overlap with valid/test inputs rejects a row")
    decontam_splits: list[Literal["valid", "test"]] = Field(["valid", "test"], description="splits checked")
    decontam_near_threshold: float | None = Field(0.8, gt=0, le=1, description="near duplicate of a test input "
                                                  "rejects a row; null turns the check off")


class GeneratorConfig(Strict):
    """The OpenAI-compatible endpoint of the LLM strategies (augscale.augment.llm), and its limits.

    The endpoint and the model may come from the environment (``base_url_env``, ``model_env``);
    the API key always does: ``api_key_env`` is the NAME of the variable, never the key.
    Requests in flight: ``actors`` x ``concurrency``; limits are for the whole run.
    """

    base_url: str | None = Field(None, description="e.g. https://api.openai.com/v1; default: $base_url_env")
    base_url_env: str = Field("OPENAI_BASE_URL", description="variable holding the URL when base_url is unset")
    model: str | None = Field(None, description="model name the endpoint serves; default: $model_env")
    model_env: str = Field("AUGSCALE_LLM_MODEL", description="variable holding the model when model is unset")
    api_key_env: str = Field("OPENAI_API_KEY", description="NAME of the variable holding the API key")
    actors: int = Field(1, ge=1, description="Ray Data actors sending requests")
    cpus_per_actor: float = Field(0.5, gt=0, description="CPUs reserved per actor (parsing and verifying)")
    concurrency: int = Field(16, ge=1, le=1024, description="requests in flight per actor")
    requests_per_minute: float | None = Field(None, gt=0, description="limit for the whole run")
    tokens_per_minute: float | None = Field(None, gt=0, description="limit for the whole run (prompt + completion)")
    timeout_s: float = Field(60.0, gt=0, description="seconds per try of one request")
    max_attempts: int = Field(5, ge=1, le=20, description="tries per request (429, 5xx, time-outs are retried)")
    initial_backoff_s: float = Field(0.5, ge=0, description="first back-off; doubles per try, with jitter")
    max_backoff_s: float = Field(30.0, ge=0, description="longest wait, Retry-After included")
    temperature: float = Field(0.7, ge=0, le=2)
    samples_per_prompt: int = Field(1, ge=1, le=64, description="default samples per prompt (strategies may override)")
    max_tokens: int = Field(512, ge=1, description="tokens per answer")
    native_n: bool = Field(True, description="ask for n samples in one request; false for servers that ignore n")
    price_input_per_mtok: float = Field(0.0, ge=0, description="USD per million prompt tokens")
    price_output_per_mtok: float = Field(0.0, ge=0, description="USD per million completion tokens")
    budget_tokens: int | None = Field(
        None, ge=1, description="stop sending after this many tokens in all (resumed runs included); "
                                "a stopped run goes on when rerun with a larger budget")
    budget_usd: float | None = Field(None, gt=0, description="stop sending after this cost in USD in all "
                                                           "(as budget_tokens)")
    max_failure_rate: float = Field(0.5, gt=0, le=1, description="share of requests failing after every retry "
                                    "that stops the run")

    @field_validator("api_key_env", "base_url_env", "model_env")
    @classmethod
    def _variable_name(cls, v: str) -> str:
        import re

        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
            # never echo the value: it may be the key itself, pasted in the wrong place
            raise ValueError("must be the NAME of an environment variable (letters, digits, _), "
                             "e.g. OPENAI_API_KEY, not its value")
        return v


class AugmentConfig(Strict):
    """``augscale augment``: grow the seed rows into an augmented snapshot.

    The LLM strategies add a ``generator`` section here (endpoint, model, limits, budget).
    """

    kind: Literal["augment"] = "augment"
    task: TaskConfig = TaskConfig()
    data: DataSourceConfig = DataSourceConfig()
    name: str = Field("augmented", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="snapshot name")
    strategies: list[AugmentStrategyConfig] = Field(..., min_length=1)
    target_size: int = Field(..., ge=1, description="accepted new rows wanted")
    filters: AugmentFilterConfig = AugmentFilterConfig()
    seed: int = 0
    max_seeds: int | None = Field(None, ge=1, description="use only the first N seed rows")
    block_size: int = Field(64, ge=1, description="seed rows per persisted block (resume granularity)")
    concurrency: int | None = Field(None, ge=1, description="actors per strategy (default: the cluster's CPUs)")
    generator: GeneratorConfig | None = Field(None, description="the LLM endpoint, for LLM strategies")

    @model_validator(mode="after")
    def _strategies(self) -> "AugmentConfig":
        from augscale.augment.strategies import get_strategy

        seen: set[str] = set()
        for i, s in enumerate(self.strategies):
            if s.name in seen:
                raise ValueError(f"strategies.{i}.name: {s.name!r} is listed twice; give each strategy once")
            seen.add(s.name)
            try:
                cls = get_strategy(s.name, self.task.name)
            except AugscaleError as e:
                raise ValueError(f"strategies.{i}.name: {e}") from None
            try:
                cls.Params.model_validate(s.params)
            except ValidationError as e:
                allowed = ", ".join(sorted(cls.Params.model_fields)) or "none"
                problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
                raise ValueError(f"strategies.{i}.params ({s.name} for {self.task.name}): {problems}. "
                                 f"Allowed keys: {allowed}") from None
        return self


# ---------------------------------------------------------------------------------------------
# augscale train
# ---------------------------------------------------------------------------------------------
# >>> train models
class TrainModelConfig(Strict):
    """The model to fine-tune: a Hub id or checkpoint folder, or a small one built on demand."""

    path: str | None = Field(None, description="Hugging Face Hub id or local HF checkpoint folder")
    init: ModelInitConfig | None = Field(None, description="build a small model (as `augscale model init`) "
                                         "when path is null; cached under the run's out_dir")
    special_tokens: list[str] | None = Field(None, description="default: the task's four markers")
    attn_implementation: str = Field("sdpa", description="sdpa, eager or flash_attention_2")
    gradient_checkpointing: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> "TrainModelConfig":
        if (self.path is None) == (self.init is None):
            raise ValueError("give exactly one of model.path (Hub id or folder) and model.init "
                             "(a small model built on demand)")
        return self


class TrainDataConfig(Strict):
    """Training rows: the original snapshot, optional augmented snapshots, the mixture and its order.

    ``size`` below the original's row count takes a nested subset of the originals; above it,
    all originals plus augmented rows composed by ``shares`` (strategy -> share), nested too.
    """

    original: DataSourceConfig = DataSourceConfig()
    augmented: list[str] = Field(default_factory=list, description="augmented snapshot folders or parquet files")
    size: int | None = Field(None, ge=1, description="training rows; default: every original and augmented row")
    shares: dict[str, float] | None = Field(None, description="strategy -> share of the augmented rows; "
                                            "default: as available")
    curriculum: str = Field("random", description="random, easy_to_hard, hard_to_easy, original_first, original_last")
    valid_limit: int | None = Field(None, ge=1, description="evaluate on the first N valid rows only")

    @field_validator("curriculum")
    @classmethod
    def _known_curriculum(cls, name: str) -> str:
        from augscale.tasks import unknown_name_message
        from augscale.train.curriculum import curriculum_names

        if name not in curriculum_names():
            raise ValueError(unknown_name_message("curriculum", name, curriculum_names()))
        return name

    @model_validator(mode="after")
    def _check(self) -> "TrainDataConfig":
        for name, share in (self.shares or {}).items():
            if share < 0:
                raise ValueError(f"shares.{name} = {share}: a share must be >= 0")
        if self.shares is not None and sum(self.shares.values()) <= 0:
            raise ValueError("shares: at least one share must be > 0")
        return self


class BatchingConfig(Strict):
    """How examples become micro-batches (per worker)."""

    strategy: Literal["grouped", "padded"] = Field(
        "grouped", description="grouped: sort by length inside windows of the curriculum order, pad to the "
        "longest in each micro-batch; padded: every example padded to max_seq_len (the baseline)")
    micro_batch_size: int = Field(16, ge=1, description="examples per micro-batch per worker")
    window: int = Field(1024, ge=1, description="examples per length-grouping window (a multiple of micro_batch_size)")
    max_seq_len: int = Field(512, ge=8, description="longer examples are truncated (and counted)")

    @model_validator(mode="after")
    def _window(self) -> "BatchingConfig":
        if self.window % self.micro_batch_size:
            raise ValueError(f"window ({self.window}) must be a multiple of micro_batch_size "
                             f"({self.micro_batch_size}), e.g. {self.micro_batch_size * max(1, self.window // self.micro_batch_size)}")
        return self


class OptimizerConfig(Strict):
    """AdamW (DeepSpeed's CPU Adam when the optimizer state is offloaded)."""

    lr: float = Field(2e-5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)


class ScheduleConfig(Strict):
    """Learning rate: linear warmup, then cosine, linear or constant."""

    warmup_steps: int | None = Field(None, ge=0, description="default: warmup_ratio of the optimizer steps")
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    decay: Literal["cosine", "linear", "constant"] = "cosine"
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="final lr as a share of optimizer.lr")


class DeepSpeedSettings(Strict):
    """ZeRO stage, offload and precision."""

    zero_stage: Literal[2, 3] = 3
    offload_optimizer: bool = Field(False, description="optimizer state in CPU memory (DeepSpeed CPU Adam)")
    offload_params: bool = Field(False, description="parameters in CPU memory (ZeRO-3 only)")
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto: bf16 on GPU, fp32 on CPU")

    @model_validator(mode="after")
    def _offload(self) -> "DeepSpeedSettings":
        if self.offload_params and self.zero_stage != 3:
            raise ValueError("offload_params needs zero_stage 3 (ZeRO-2 does not partition parameters). "
                             "Set deepspeed.zero_stage=3, or deepspeed.offload_params=false")
        return self


class ScalingSettings(Strict):
    """Ray Train workers and their resources."""

    num_workers: int = Field(2, ge=1)
    use_gpu: bool | Literal["auto"] = Field("auto", description="auto: GPUs when the Ray cluster has any")
    cpus_per_worker: float = Field(1, gt=0)
    gpus_per_worker: float = Field(1, gt=0, description="used when use_gpu")
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_SPREAD"] = Field(
        "PACK", description="STRICT_SPREAD: one worker per node")


class CheckpointSettings(Strict):
    """Checkpoints in HF format (+ DeepSpeed state) each epoch and at the end."""

    keep: int | None = Field(None, ge=1, description="checkpoints kept: the best by valid loss, and always the latest; "
                             "default all")


class FailureSettings(Strict):
    max_failures: int = Field(2, ge=-1, description="worker failures recovered from the last checkpoint (-1: always)")


class TrainConfig(Strict):
    """``augscale train``: full fine-tuning, Ray Data streamed into Ray Train workers running DeepSpeed."""

    kind: Literal["train"] = "train"
    task: TaskConfig = TaskConfig()
    model: TrainModelConfig
    data: TrainDataConfig = TrainDataConfig()
    loss_on: Literal["answer", "all"] = Field("answer", description="answer: loss on the target and end token only")
    batching: BatchingConfig = BatchingConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    epochs: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1, description="optimizer steps; when set, overrides epochs")
    grad_accum: int = Field(1, ge=1)
    clip_grad_norm: float | None = Field(1.0, gt=0)
    deepspeed: DeepSpeedSettings = DeepSpeedSettings()
    scaling: ScalingSettings = ScalingSettings()
    checkpoint: CheckpointSettings = CheckpointSettings()
    failure: FailureSettings = FailureSettings()
    seed: int = 0
    out_dir: str = Field("runs/train/run", description="the run folder: checkpoints, metrics.jsonl, manifest.json")
    progress: bool = Field(True, description="a progress bar on the console")

    @model_validator(mode="after")
    def _init_task(self) -> "TrainConfig":
        if self.model.init is not None and self.model.init.task.name != self.task.name:
            raise ValueError(f"model.init.task.name ({self.model.init.task.name!r}) must match task.name "
                             f"({self.task.name!r}): the tokenizer is trained on the task's text")
        return self


# ---------------------------------------------------------------------------------------------
# augscale evaluate
# ---------------------------------------------------------------------------------------------
# >>> evaluate models
class EvalSettings(Strict):
    """How to evaluate a checkpoint, for configs that embed an evaluation (e.g. an ablation's ``eval:``).

    ``augscale evaluate`` takes the same settings as flags; :meth:`kwargs` unpacks them into
    :func:`augscale.evaluate.run.evaluate_model`.
    """

    split: Literal["train", "valid", "test"] = "test"
    limit: int | None = Field(None, ge=1, description="the first N records only")
    shots: int = Field(0, ge=0, description="solved examples per prompt (natural-language prompts)")
    prompt_style: Literal["tokens", "natural"] | None = Field(
        None, description="default: tokens for a local zero-shot model, else natural")
    max_new_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.0, ge=0.0, description="0: greedy")
    batch_size: int = Field(16, ge=1, description="prompts per generation batch")
    concurrency: int | None = Field(None, ge=1, description="model copies (local) or requests in flight (endpoint)")
    num_gpus: float | None = Field(None, ge=0, description="GPUs per model copy; default: 1 if the cluster has GPUs")
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    compute_loss: bool = Field(True, description="the reference answers' loss (local models)")
    max_failure_rate: float = Field(0.1, ge=0.0, le=1.0)
    seed: int = 0

    def kwargs(self) -> dict[str, Any]:
        """Plain keyword arguments for ``evaluate_model``."""
        return self.model_dump()


# ---------------------------------------------------------------------------------------------
# augscale ablate / demo
# ---------------------------------------------------------------------------------------------
# >>> experiment models
class ArmGrid(Strict):
    """The arms: every size x strategy x curriculum x seed that makes sense.

    Sizes at or below ``original_size`` train on nested subsets of the originals (strategy
    ``original``); sizes above it add nested augmented rows of one strategy each.
    """

    sizes: list[float] = Field([1.0, 2.0, 4.0], description="multiples of original_size (e.g. 0.5, 1, 2, 4) "
                               "or, with sizes_are_multiples false, absolute row counts")
    sizes_are_multiples: bool = True
    strategies: list[str] = Field(["original", "substitute"], description="'original' and augmentation strategies")
    curricula: list[str] = Field(["random"], description="random, easy_to_hard, hard_to_easy, original_first, "
                                 "original_last")
    seeds: list[int] = Field([0], description="one full grid per seed (the mixture order and training seed)")

    @model_validator(mode="after")
    def _check(self) -> "ArmGrid":
        from augscale.train.curriculum import check_curriculum

        for c in self.curricula:
            check_curriculum(c)
        if any(s <= 0 for s in self.sizes):
            raise ValueError("sizes must be > 0")
        if not self.seeds:
            raise ValueError("seeds: give at least one seed")
        return self


class BudgetConfig(Strict):
    """Compute per arm: the same epochs (more data, more compute) or the same optimizer steps."""

    mode: Literal["epochs", "steps"] = Field("epochs", description="epochs: same epochs for every arm; steps: same "
                                             "optimizer steps, separating the gain of data from the gain of compute")
    epochs: int = Field(1, ge=1, description="mode epochs")
    steps: int | None = Field(None, ge=1, description="mode steps (default: one epoch of the original-size arm)")


class ExperimentEvalConfig(Strict):
    """How each arm's final checkpoint is evaluated (the same items for every arm)."""

    split: Literal["valid", "test"] = "test"
    limit: int | None = Field(200, ge=1)
    max_new_tokens: int = Field(256, ge=1)
    batch_size: int = Field(32, ge=1)
    concurrency: int = Field(1, ge=1, description="model copies generating side by side")
    num_gpus: float | None = Field(None, ge=0, description="GPUs per model copy (default: 1 when the cluster has GPUs)")


class ExperimentAugmentConfig(Strict):
    """Where the augmented rows come from: an augment config (made on demand, reused from the cache)."""

    config: str | None = Field(None, description="an augment config file (relative to this file)")
    inline: dict[str, Any] | None = Field(None, description="the augment config's keys, inline")
    snapshots: list[str] = Field(default_factory=list, description="augmented snapshot folders to reuse as they are")


class AblateConfig(Strict):
    """``augscale ablate``: a scaling-by-data grid, each arm trained then evaluated, then the report."""

    kind: Literal["ablate"] = "ablate"
    task: TaskConfig = TaskConfig()
    data: DataSourceConfig = DataSourceConfig()
    original_size: int | None = Field(None, ge=1, description="the original-size arm's rows: a nested subset of "
                                      "the training split (default: all of it); augmentation keeps rows whose "
                                      "parent is in it")
    train: str | dict[str, Any] = Field(..., description="the base train config: a file (relative to this file) "
                                        "or its keys inline; data, epochs/max_steps, seed and out_dir are set per arm")
    augment: ExperimentAugmentConfig = ExperimentAugmentConfig()
    eval: ExperimentEvalConfig = ExperimentEvalConfig()
    arms: ArmGrid = ArmGrid()
    budget: BudgetConfig = BudgetConfig()
    headline: str = Field("accuracy", description="the metric the plot and the paired tests use")
    out_dir: str = Field("runs/ablate", description="the run folder: arms/, results.csv, report.md, scaling.png")


CONFIG_MODELS: dict[str, type[BaseModel]] = {
    "augment": AugmentConfig,
    "ablate": AblateConfig,
    "model": ModelInitConfig,
    "train": TrainConfig,
}
