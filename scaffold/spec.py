"""The option spec: the single source of every generation option.

CLI flags, validation, `dlgen list`, the rendering context, the test matrix and the
docs table are all derived from OPTIONS and RULES below. A feature is one entry here
plus one snippet template.
"""

from __future__ import annotations

import difflib
import keyword
import re
import sys
from dataclasses import dataclass, field, fields

from scaffold.errors import SpecError


@dataclass(frozen=True)
class Choice:
    value: str
    help: str
    alias: bool = False  # another name for a setting the spec records otherwise


@dataclass(frozen=True)
class Option:
    """One generation option: a choice among values, or an on/off flag (choices=())."""

    name: str
    help: str
    default: str | bool
    choices: tuple[Choice, ...] = ()
    # Models this option applies to; empty means all. Giving it for another model is an error.
    models: tuple[str, ...] = ()
    # Generated files that exist only when this option is on (flags) or has this value.
    files: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def is_flag(self) -> bool:
        return not self.choices

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(c.value for c in self.choices)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


_LAUNCHERS = (
    "{pkg}/distributed.py",
    "scripts/train_ddp.sh",
    "scripts/train_multinode.sh",
    "scripts/slurm.sbatch",
)

OPTIONS: tuple[Option, ...] = (
    Option(
        "model",
        "The network to train.",
        "mlp",
        (
            Choice("mlp", "multi-layer perceptron on tabular features (CSV)"),
            Choice("cnn", "convolutional image classifier (image folder or .npz)"),
            Choice("transformer", "transformer encoder over token sequences (TSV)"),
            Choice("gpt", "decoder-only causal language model (plain text)"),
        ),
        files={
            "mlp": ("{pkg}/predict.py",),
            "cnn": ("{pkg}/predict.py",),
            "transformer": ("{pkg}/predict.py",),
            "gpt": ("{pkg}/sample.py", "{pkg}/prepare.py"),
        },
    ),
    Option(
        "task",
        "What the model predicts (gpt always predicts the next token).",
        "classification",
        (
            Choice("classification", "cross-entropy over classes, accuracy reported"),
            Choice("regression", "mean squared error on a standardized target"),
        ),
    ),
    Option(
        "optimizer",
        "The optimizer; weight decay never applies to biases or norm weights.",
        "adamw",
        (
            Choice("adamw", "Adam with decoupled weight decay (Loshchilov & Hutter)"),
            Choice("adam", "Adam (Kingma & Ba)"),
            Choice("sgd", "SGD with Nesterov momentum"),
        ),
    ),
    Option(
        "scheduler",
        "The learning-rate schedule, stepped once per optimizer step.",
        "warmup-cosine",
        (
            Choice("none", "constant learning rate"),
            Choice("cosine", "cosine annealing to min_lr (CosineAnnealingLR)"),
            Choice("step", "multiply by gamma every step_size steps (StepLR)"),
            Choice("warmup-cosine", "linear warm-up, then cosine (LinearLR + CosineAnnealingLR)"),
            Choice(
                "cosine-restarts", "SGDR: cosine with warm restarts (CosineAnnealingWarmRestarts)"
            ),
            Choice("onecycle", "one-cycle policy (OneCycleLR)"),
        ),
    ),
    Option(
        "attention",
        "How attention is computed (transformer and gpt).",
        "sdpa",
        (
            Choice("sdpa", "fused F.scaled_dot_product_attention"),
            Choice("manual", "explicit softmax(QK^T/sqrt(d))V, for teaching"),
        ),
        models=("transformer", "gpt"),
    ),
    Option(
        "amp",
        "Mixed precision: bf16 or fp16 autocast, GradScaler for fp16.",
        False,
        files={True: ("{pkg}/precision.py",)},
    ),
    Option(
        "grad_checkpointing",
        "Recompute each block's activations during backward: less memory, more compute.",
        False,
    ),
    Option("compile", "torch.compile the model, in place, so checkpoints stay portable.", False),
    Option(
        "ema", "Keep an exponential moving average of the weights, evaluated beside them.", False
    ),
    Option(
        "tensorboard",
        "Also log every metric to TensorBoard, in <out_dir>/tensorboard (pip install "
        "tensorboard).",
        False,
    ),
    Option(
        "tracker",
        "Also send every event and the config to an experiment tracker (TensorBoard, a "
        "local file writer, is --tensorboard and combines with any of these).",
        "none",
        (
            Choice("none", "metrics.jsonl and the run folder only"),
            Choice("mlflow", "MLflow: <out_dir>/mlflow.db unless MLFLOW_TRACKING_URI is set"),
            Choice("wandb", "Weights & Biases, offline unless WANDB_MODE says otherwise"),
            Choice("tensorboard", "TensorBoard event files: the same as --tensorboard", alias=True),
        ),
        files={"mlflow": ("{pkg}/tracking.py",), "wandb": ("{pkg}/tracking.py",)},
    ),
    Option(
        "sweep",
        "Hyperparameter search with Optuna: python -m PKG.sweep and configs/sweep.toml "
        "(pip install optuna).",
        False,
        files={True: ("{pkg}/sweep.py", "configs/sweep.toml")},
    ),
    Option(
        "ddp",
        "DistributedDataParallel under torchrun (nccl on GPUs, gloo on CPU), with launchers.",
        False,
        files={True: _LAUNCHERS},
    ),
    Option(
        "fsdp",
        "FSDP2 (fully_shard) under torchrun: parameters, gradients and optimizer state sharded.",
        False,
        files={True: _LAUNCHERS},
    ),
    Option(
        "tooling",
        "Project tooling: pre-commit hooks (black, ruff) and a GitHub Actions workflow that "
        "lints and tests on every push.",
        False,
        files={
            True: (".pre-commit-config.yaml", ".github/workflows/tests.yml", "tests/test_gpu.py")
        },
    ),
    Option(
        "teach",
        "Add explanatory comments that say why, with links, and notebooks/walkthrough.ipynb: "
        "one training step of the project, line by line.",
        False,
        files={True: ("notebooks/walkthrough.ipynb",)},
    ),
    Option(
        "lang",
        "Language of comments and docstrings.",
        "en",
        (Choice("en", "English"), Choice("zh", "Simplified Chinese (简体中文)")),
    ),
)

OPTION_BY_NAME = {o.name: o for o in OPTIONS}


@dataclass(frozen=True)
class Rule:
    """A combination that is invalid by design: `when(spec)` true means refuse with `message`."""

    when: object
    message: str


RULES: tuple[Rule, ...] = (
    Rule(
        lambda s: s.ddp and s.fsdp,
        "--ddp and --fsdp exclude each other: FSDP already replicates the training step on "
        "every rank; pick one",
    ),
    Rule(
        lambda s: s.fsdp and s.ema,
        "--ema with --fsdp is not supported: the average would need the full, gathered "
        "weights on every step; use --ddp for EMA",
    ),
    Rule(
        lambda s: s.fsdp and s.compile,
        "--compile with --fsdp is not verified by dlgen's test matrix yet; drop one of them",
    ),
    Rule(
        lambda s: s.model == "gpt" and s.task == "regression",
        "--task regression does not apply to --model gpt: a language model predicts "
        "the next token; drop --task or pick mlp, cnn or transformer",
    ),
)


@dataclass(frozen=True)
class ProjectSpec:
    """Every answer of one generated project, validated."""

    name: str
    package: str
    model: str = "mlp"
    task: str = "classification"
    optimizer: str = "adamw"
    scheduler: str = "warmup-cosine"
    attention: str = "sdpa"
    amp: bool = False
    grad_checkpointing: bool = False
    compile: bool = False
    ema: bool = False
    tensorboard: bool = False
    tracker: str = "none"
    sweep: bool = False
    ddp: bool = False
    fsdp: bool = False
    tooling: bool = False
    teach: bool = False
    lang: str = "en"

    def answers(self) -> dict[str, str | bool]:
        """The options that apply to this model, as recorded in .dlgen.toml: build_spec(name,
        **answers()) gives this spec back."""
        return {
            o.name: getattr(self, o.name) for o in OPTIONS if not o.models or self.model in o.models
        }


# The spec and the dataclass must agree field for field.
assert [f.name for f in fields(ProjectSpec)][2:] == [o.name for o in OPTIONS]

NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
MAX_NAME = 64


def package_name(name: str) -> str:
    """The Python package for a project name: lower case, '-' becomes '_'."""
    return name.lower().replace("-", "_")


def _suggest_name(name: str) -> str:
    cleaned = re.sub(r"[^a-z0-9_]+", "_", name.strip().lower().replace("-", "_")).strip("_")
    cleaned = cleaned.lstrip("0123456789_") or "project"
    candidate = cleaned[:MAX_NAME]
    if (
        keyword.iskeyword(candidate)
        or candidate in sys.stdlib_module_names
        or candidate in SHADOWED
        or candidate in PROJECT_FOLDERS
    ):
        candidate = f"my_{candidate}"[:MAX_NAME]
    return candidate


# Modules a generated project imports, always or with an option, and the tools it runs: a
# package of the same name, first on sys.path, would shadow them. Compared in lower case.
SHADOWED = frozenset(
    {
        *("torch", "tqdm", "pytest", "test", "numpy", "tensorboard", "tensorboardx", "mlflow"),
        *("wandb", "optuna", "tokenizers", "safetensors", "matplotlib", "pil", "pillow"),
        *("torchdata", "torchvision", "torchaudio", "torchtext", "nbformat", "nbclient"),
        *("jupyter", "ipykernel", "ipython", "yaml", "pyyaml", "pandas", "scipy", "sklearn"),
        *("black", "ruff", "hypothesis", "triton", "setuptools", "pip", "wheel", "pkg_resources"),
        *("conftest", "typing_extensions", "packaging", "tomli", "google", "protobuf"),
    }
)
# The project's own folders: a package of the same name would be the folder (or hidden by
# the project's .gitignore, as runs/ and checkpoints/ are).
PROJECT_FOLDERS = frozenset(
    {"runs", "checkpoints", "notebooks", "configs", "scripts", "tests", "data", "benchmarks"}
)


def validate_name(name: str) -> str:
    """Check a project name and return its package name, or raise SpecError."""

    def refuse(why: str) -> SpecError:
        return SpecError(f"invalid project name {name!r}: {why}; try {_suggest_name(name)!r}")

    if not name or not name.strip():
        raise refuse("it is empty")
    if len(name) > MAX_NAME:
        raise refuse(f"it is longer than {MAX_NAME} characters")
    if name[0].isdigit():
        raise refuse("it starts with a digit")
    if not NAME_RE.fullmatch(name):
        if name.startswith("_"):
            raise refuse("it must start with a letter")
        raise refuse("use only ASCII letters, digits, '-' and '_'")
    pkg = package_name(name)
    if keyword.iskeyword(pkg) or keyword.issoftkeyword(pkg):
        raise refuse(f"{pkg!r} is a Python keyword")
    if pkg in PROJECT_FOLDERS:
        raise refuse(f"package {pkg!r} would collide with the project's own {pkg}/ folder")
    if pkg in sys.stdlib_module_names or pkg in SHADOWED:
        raise refuse(f"package {pkg!r} would shadow the module of that name")
    return pkg


def _check_choice(option: Option, value: str) -> str:
    if value in option.values:
        return value
    close = difflib.get_close_matches(value, option.values, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise SpecError(
        f"invalid value {value!r} for {option.flag}{hint}; choose one of: {', '.join(option.values)}"
    )


def build_spec(name: str, **given: str | bool | None) -> ProjectSpec:
    """Validate a project name and the options given; None means "not given, use the default"."""
    unknown = set(given) - set(OPTION_BY_NAME)
    if unknown:
        raise SpecError(f"unknown option(s): {', '.join(sorted(unknown))}")
    for option in OPTIONS:  # a flag is a bool, a choice a str: `ema = "false"` is no flag
        value = given.get(option.name)
        if value is not None and option.is_flag and not isinstance(value, bool):
            raise SpecError(f"{option.flag} is on or off (true or false), not {value!r}")
        if value is not None and not option.is_flag and not isinstance(value, str):
            raise SpecError(f"invalid value {value!r} for {option.flag}; it must be a string")
    if not isinstance(name, str):
        raise SpecError(f"invalid project name {name!r}: it must be a string")
    package = validate_name(name)
    model = _check_choice(OPTION_BY_NAME["model"], given.get("model") or "mlp")
    values: dict[str, str | bool] = {}
    for option in OPTIONS:
        value = given.get(option.name)
        if value is None:
            values[option.name] = option.default
            continue
        if option.models and model not in option.models:
            raise SpecError(
                f"{option.flag} applies only to --model {' or '.join(option.models)}, not {model}"
            )
        values[option.name] = value if option.is_flag else _check_choice(option, value)
    if values["tracker"] == "tensorboard":  # an alias: TensorBoard is its own flag
        values["tracker"], values["tensorboard"] = "none", True
    spec = ProjectSpec(name=name, package=package, **values)
    for rule in RULES:
        if rule.when(spec):
            raise SpecError(rule.message)
    return spec


def generated_files_claimed() -> dict[str, list[tuple[str, object]]]:
    """Map each optional file to the (option, value) pairs that bring it; any one will do."""
    claimed: dict[str, list[tuple[str, object]]] = {}
    for option in OPTIONS:
        for value, paths in option.files.items():
            for path in paths:
                claimed.setdefault(path, []).append((option.name, value))
    return claimed


@dataclass(frozen=True)
class ConfigField:
    """One field of the generated project's Config dataclass (and of configs/default.toml)."""

    name: str
    type: str  # "int", "float", "str", "bool", "list[int]" or "list[float]"
    default: object
    help: str


F = ConfigField

_DISTRIBUTED_FIELDS = (
    F("dist_timeout", "int", 300, "seconds a collective may wait for a peer before failing"),
    F(
        "new_global_batch",
        "bool",
        False,
        "resume on another number of ranks with a new global batch",
    ),
)

# The generated Config's fields. Keys are (option, value) pairs, or "base" for every project;
# the fields of the options in force are concatenated in spec order, a later field of the
# same name overriding the default of an earlier one.
CONFIG_FIELDS: dict[str | tuple[str, str], tuple[ConfigField, ...]] = {
    "base": (
        F("epochs", "int", 5, "passes over the training set (max_steps wins when > 0)"),
        F("max_steps", "int", 0, "optimizer steps to take; 0 = use epochs"),
        F("batch_size", "int", 64, "examples per micro-batch"),
        F("grad_accum_steps", "int", 1, "micro-batches per optimizer step"),
        F("lr", "float", 1e-3, "peak learning rate"),
        F("weight_decay", "float", 0.01, "decoupled weight decay (not on biases or norms)"),
        F("grad_clip", "float", 1.0, "clip the global gradient norm to this; 0 = off"),
        F("seed", "int", 0, "seeds the data split, the shuffle and the initial weights"),
        F("device", "str", "auto", "auto (cuda, then mps, then cpu), cpu, cuda or mps"),
        F("out_dir", "str", "runs/default", "metrics.jsonl and checkpoints/ go here"),
        F("log_every", "int", 10, "log the training loss every this many steps"),
        F("eval_every", "int", 100, "evaluate on the validation split every this many steps"),
        F("save_every", "int", 100, "write checkpoints/last.pt every this many steps"),
        F("resume", "str", "none", "none, auto (out_dir/checkpoints/last.pt) or a path"),
        F("init_from", "str", "", "load model weights only from this checkpoint (fine-tune)"),
        F("data_path", "str", "", "your data file or folder; empty = synthetic data"),
        F("val_fraction", "float", 0.1, "share of the data held out for validation"),
        F("num_workers", "int", 0, "DataLoader worker processes; 0 = load in the main one"),
        F("overwrite", "bool", False, "start over in an out_dir that already holds a run"),
    ),
    ("model", "mlp"): (
        F("target", "str", "label", "name of the target column in your CSV"),
        F("input_dim", "int", 20, "features per example (inferred from your CSV)"),
        F("hidden_dims", "list[int]", [128, 128], "width of each hidden layer"),
        F("dropout", "float", 0.1, "dropout after each hidden layer"),
        F("num_samples", "int", 4096, "size of the synthetic data set"),
    ),
    ("model", "cnn"): (
        F("in_channels", "int", 3, "image channels (inferred from your data)"),
        F("image_size", "int", 32, "images are square, this many pixels a side"),
        F("channels", "list[int]", [32, 64], "width of each conv stage; each halves the size"),
        F("batch_norm", "bool", True, "batch normalization after each convolution"),
        F("dropout", "float", 0.25, "dropout before the linear head"),
        F("augment", "bool", True, "image folders: random resized crop and flip"),
        F("num_samples", "int", 2048, "size of the synthetic data set"),
    ),
    ("model", "transformer"): (
        F("vocab_size", "int", 64, "tokens in the vocabulary (inferred from your data)"),
        F("seq_len", "int", 64, "tokens per example; longer ones are cut"),
        F("d_model", "int", 128, "width of the residual stream"),
        F("n_heads", "int", 4, "attention heads"),
        F("n_layers", "int", 2, "encoder layers"),
        F("d_ff", "int", 512, "width of the feed-forward layer"),
        F("dropout", "float", 0.1, "dropout on embeddings and residual branches"),
        F("attn_dropout", "float", 0.0, "dropout on attention weights (0 keeps SDPA fused)"),
        F("norm_first", "bool", True, "pre-norm (LayerNorm before each sublayer)"),
        F("tokenizer", "str", "char", "how your TSV text is split: char, word or bpe"),
        F("bpe_vocab_size", "int", 1000, "vocabulary a bpe tokenizer learns from your TSV"),
        F("num_samples", "int", 2048, "size of the synthetic data set"),
    ),
    ("model", "gpt"): (
        F("max_steps", "int", 500, "optimizer steps to take; 0 = use epochs"),
        F("batch_size", "int", 32, "sequences per micro-batch"),
        F("weight_decay", "float", 0.1, "decoupled weight decay (not on biases or norms)"),
        F("vocab_size", "int", 64, "tokens in the vocabulary (inferred from the data)"),
        F("seq_len", "int", 64, "context length in tokens"),
        F("d_model", "int", 128, "width of the residual stream"),
        F("n_heads", "int", 4, "attention heads"),
        F("n_layers", "int", 4, "transformer blocks"),
        F("d_ff", "int", 512, "width of the feed-forward layer"),
        F("dropout", "float", 0.0, "dropout on embeddings and residual branches"),
        F("attn_dropout", "float", 0.0, "dropout on attention weights (0 keeps SDPA fused)"),
        F("corpus_chars", "int", 100_000, "length of the synthetic text"),
    ),
    ("task", "classification"): (
        F("num_classes", "int", 4, "number of classes (inferred from your data)"),
        F("label_smoothing", "float", 0.0, "cross-entropy label smoothing (Szegedy et al.)"),
    ),
    ("amp", "True"): (
        F(
            "precision",
            "str",
            "auto",
            "auto (bf16 or fp16 on CUDA, fp32 elsewhere), bf16, fp16, fp32",
        ),
    ),
    ("grad_checkpointing", "True"): (
        F("grad_checkpointing", "bool", True, "recompute block activations in backward"),
    ),
    ("compile", "True"): (F("compile", "bool", True, "torch.compile the model"),),
    ("ema", "True"): (F("ema_decay", "float", 0.99, "weight of the old average at each step"),),
    ("ddp", "True"): _DISTRIBUTED_FIELDS,
    ("fsdp", "True"): (
        *_DISTRIBUTED_FIELDS,
        F("save_every", "int", 100, "write a checkpoints/step-N folder every this many steps"),
        F("resume", "str", "none", "none, auto (out_dir/checkpoints/latest) or a path"),
        F("keep_last", "int", 2, "step folders to keep (best is kept too); 0 = all"),
        F("async_save", "bool", False, "write checkpoints in the background while training"),
    ),
    ("optimizer", "adamw"): (F("betas", "list[float]", [0.9, 0.999], "Adam's beta1, beta2"),),
    ("optimizer", "adam"): (
        F("weight_decay", "float", 0.0, "L2 penalty added to the gradient (not biases, norms)"),
        F("betas", "list[float]", [0.9, 0.999], "Adam's beta1, beta2"),
    ),
    ("optimizer", "sgd"): (
        F("lr", "float", 0.05, "peak learning rate"),
        F("weight_decay", "float", 5e-4, "L2 penalty added to the gradient (not biases, norms)"),
        F("momentum", "float", 0.9, "Nesterov momentum"),
    ),
    ("scheduler", "cosine"): (F("min_lr", "float", 0.0, "learning rate at the end"),),
    ("scheduler", "step"): (
        F("step_size", "int", -1, "decay every this many steps; -1 = a third of the run"),
        F("gamma", "float", 0.1, "decay factor"),
    ),
    ("scheduler", "warmup-cosine"): (
        F("warmup_steps", "int", -1, "linear warm-up steps; -1 = 5% of the run"),
        F("min_lr", "float", 0.0, "learning rate at the end"),
    ),
    ("scheduler", "cosine-restarts"): (
        F("t_0", "int", -1, "steps in the first cycle; -1 = a quarter of the run"),
        F("t_mult", "int", 1, "each cycle is this many times longer than the last"),
        F("min_lr", "float", 0.0, "learning rate at the bottom of each cycle"),
    ),
    ("scheduler", "onecycle"): (
        F("max_lr", "float", -1.0, "peak learning rate of the cycle; -1 = lr"),
        F("pct_start", "float", 0.3, "share of the run spent raising the rate to the peak"),
    ),
}


# The Chinese help of each Config field, keyed by its English help (a test checks that
# every help in CONFIG_FIELDS has one): the --help of a --lang zh project's train CLI and
# the comments of its configs/default.toml.
CONFIG_HELP_ZH: dict[str, str] = {
    "write a checkpoints/step-N folder every this many steps": "每隔这么多步写一个 checkpoints/step-N 文件夹",
    "none, auto (out_dir/checkpoints/latest) or a path": "none、auto（out_dir/checkpoints/latest）或一个路径",
    "step folders to keep (best is kept too); 0 = all": "保留最近几个 step 文件夹（best 也保留）；0 表示全部保留",
    "write checkpoints in the background while training": "在后台写检查点，训练不停",
    "resume on another number of ranks with a new global batch": (
        "在不同的进程数上续训时，接受一个不同的全局批次大小"
    ),
    "passes over the training set (max_steps wins when > 0)": "遍历训练集的轮（epoch）数（max_steps > 0 时以它为准）",
    "optimizer steps to take; 0 = use epochs": "优化器更新的步数；0 表示按 epochs 计算",
    "examples per micro-batch": "每个微批次的样本数",
    "micro-batches per optimizer step": "每次优化器更新累积的微批次数（梯度累积）",
    "peak learning rate": "峰值学习率",
    "decoupled weight decay (not on biases or norms)": "解耦的权重衰减（不作用于偏置和归一化层）",
    "clip the global gradient norm to this; 0 = off": "把全局梯度范数裁剪到这个值；0 表示不裁剪",
    "seeds the data split, the shuffle and the initial weights": "随机种子：决定数据划分、打乱顺序和初始权重",
    "auto (cuda, then mps, then cpu), cpu, cuda or mps": "auto（依次尝试 cuda、mps、cpu）、cpu、cuda 或 mps",
    "metrics.jsonl and checkpoints/ go here": "metrics.jsonl 和 checkpoints/ 写在这个目录",
    "log the training loss every this many steps": "每隔这么多步记录一次训练损失",
    "evaluate on the validation split every this many steps": "每隔这么多步在验证集上评估一次",
    "write checkpoints/last.pt every this many steps": "每隔这么多步写一次 checkpoints/last.pt",
    "none, auto (out_dir/checkpoints/last.pt) or a path": "none、auto（即 out_dir/checkpoints/last.pt）或一个检查点路径",
    "load model weights only from this checkpoint (fine-tune)": "只从这个检查点加载模型权重（用于微调）",
    "your data file or folder; empty = synthetic data": "你的数据文件或目录；留空则使用合成数据",
    "share of the data held out for validation": "留作验证集的数据比例",
    "DataLoader worker processes; 0 = load in the main one": "DataLoader 的工作进程数；0 表示在主进程中加载",
    "start over in an out_dir that already holds a run": "在已有运行记录的 out_dir 中从头开始",
    "name of the target column in your CSV": "CSV 中目标列的列名",
    "features per example (inferred from your CSV)": "每个样本的特征数（从你的 CSV 推断）",
    "width of each hidden layer": "每个隐藏层的宽度",
    "dropout after each hidden layer": "每个隐藏层之后的 dropout 比例",
    "size of the synthetic data set": "合成数据集的样本数",
    "image channels (inferred from your data)": "图像通道数（从你的数据推断）",
    "images are square, this many pixels a side": "图像为正方形，边长为这么多像素",
    "width of each conv stage; each halves the size": "每个卷积阶段的通道数；每个阶段把尺寸减半",
    "batch normalization after each convolution": "每个卷积之后做批归一化",
    "dropout before the linear head": "线性输出层之前的 dropout 比例",
    "image folders: random resized crop and flip": "图像目录：随机缩放裁剪和水平翻转",
    "tokens in the vocabulary (inferred from your data)": "词表中的词元数（从你的数据推断）",
    "tokens per example; longer ones are cut": "每个样本的词元数；更长的会被截断",
    "width of the residual stream": "残差流的宽度",
    "attention heads": "注意力头数",
    "encoder layers": "编码器层数",
    "width of the feed-forward layer": "前馈层的宽度",
    "dropout on embeddings and residual branches": "嵌入和残差分支上的 dropout 比例",
    "dropout on attention weights (0 keeps SDPA fused)": "注意力权重上的 dropout 比例（为 0 时 SDPA 保持融合算子）",
    "pre-norm (LayerNorm before each sublayer)": "前置归一化（每个子层之前做 LayerNorm）",
    "how your TSV text is split: char, word or bpe": "TSV 文本的切分方式：char（按字符）、word（按词）或 bpe",
    "vocabulary a bpe tokenizer learns from your TSV": "bpe 分词器从你的 TSV 中学到的词表大小",
    "sequences per micro-batch": "每个微批次的序列数",
    "tokens in the vocabulary (inferred from the data)": "词表中的词元数（从数据推断）",
    "context length in tokens": "上下文长度（词元数）",
    "transformer blocks": "Transformer 块的个数",
    "length of the synthetic text": "合成文本的长度（字符数）",
    "number of classes (inferred from your data)": "类别数（从你的数据推断）",
    "cross-entropy label smoothing (Szegedy et al.)": "交叉熵的标签平滑（Szegedy 等人提出）",
    "auto (bf16 or fp16 on CUDA, fp32 elsewhere), bf16, fp16, fp32": "auto（CUDA 上用 bf16 或 fp16，其他设备用 fp32）、bf16、fp16 或 fp32",
    "recompute block activations in backward": "在反向传播中重新计算各块的激活值",
    "torch.compile the model": "用 torch.compile 编译模型",
    "weight of the old average at each step": "每一步中旧平均值所占的权重",
    "seconds a collective may wait for a peer before failing": "集合通信等待其他进程的最长秒数，超时即失败",
    "Adam's beta1, beta2": "Adam 的 beta1 和 beta2",
    "L2 penalty added to the gradient (not biases, norms)": "加到梯度上的 L2 惩罚（不作用于偏置和归一化层）",
    "Nesterov momentum": "Nesterov 动量",
    "learning rate at the end": "结束时的学习率",
    "decay every this many steps; -1 = a third of the run": "每隔这么多步衰减一次；-1 表示总步数的三分之一",
    "decay factor": "衰减系数",
    "linear warm-up steps; -1 = 5% of the run": "线性预热的步数；-1 表示总步数的 5%",
    "steps in the first cycle; -1 = a quarter of the run": "第一个周期的步数；-1 表示总步数的四分之一",
    "each cycle is this many times longer than the last": "每个周期是上一个周期的多少倍长",
    "learning rate at the bottom of each cycle": "每个周期最低点的学习率",
    "peak learning rate of the cycle; -1 = lr": "这个周期的峰值学习率；-1 表示等于 lr",
    "share of the run spent raising the rate to the peak": "把学习率升到峰值所用的步数占总步数的比例",
}


def config_help(f: ConfigField, lang: str) -> str:
    """The help of a Config field in that language."""
    return CONFIG_HELP_ZH[f.help] if lang == "zh" else f.help


def config_fields(spec: ProjectSpec) -> list[ConfigField]:
    """The Config fields of a project: base fields, then each option's, in spec order."""
    keys: list[str | tuple[str, str]] = ["base"]
    keys += [(o.name, str(getattr(spec, o.name))) for o in OPTIONS]
    if spec.model == "gpt":  # a language model has no task of its own
        keys.remove(("task", spec.task))
    merged: dict[str, ConfigField] = {}
    for key in keys:
        for f in CONFIG_FIELDS.get(key, ()):
            merged[f.name] = f
    return list(merged.values())


@dataclass(frozen=True)
class Snippet:
    """A standalone, runnable file for one section of the cheat sheet (`dlgen snippet`)."""

    name: str
    help: str
    # The generation options its shared snippet templates are rendered with, so that the
    # snippet shows exactly the code a project with those options contains.
    options: dict = field(default_factory=dict)


SNIPPETS: tuple[Snippet, ...] = (
    Snippet("tensors", "create, reshape, index and combine tensors; dtype, device, broadcasting"),
    Snippet("mlp", "the MLP model (Linear, ReLU, dropout), with a shape check", {"model": "mlp"}),
    Snippet("cnn", "a CNN with batch norm and a head that fits any image size", {"model": "cnn"}),
    Snippet("training-loop", "weight-decay groups, accumulation, clipping and evaluation"),
    Snippet("schedulers", "six learning-rate schedules, each named for what it is"),
    Snippet("regularization", "dropout, batch norm, weight decay, label smoothing, clipping"),
    Snippet(
        "attention",
        "multi-head attention written out, checked against nn.MultiheadAttention",
        {"model": "transformer", "attention": "manual"},
    ),
    Snippet(
        "transformer-layer",
        "a transformer encoder layer, checked against nn.TransformerEncoderLayer",
        {"model": "transformer"},
    ),
    Snippet("amp", "mixed precision with torch.amp: bf16, or fp16 with GradScaler", {"amp": True}),
    Snippet("ddp", "DistributedDataParallel over 2 local gloo processes", {"ddp": True}),
    Snippet("save-load", "atomic checkpoints of state dicts, loaded with weights_only=True"),
    Snippet(
        "grad-checkpointing",
        "recompute activations in backward; the demo counts the memory saved",
        {"grad_checkpointing": True},
    ),
)

SNIPPET_BY_NAME = {s.name: s for s in SNIPPETS}

# `dlgen course`: the snippets in teaching order, each building on the ones before.
COURSE = (
    "tensors",
    "mlp",
    "cnn",
    "training-loop",
    "regularization",
    "schedulers",
    "save-load",
    "amp",
    "attention",
    "transformer-layer",
    "grad-checkpointing",
    "ddp",
)


def course_sections(sections: str | None = None) -> list[tuple[int, str]]:
    """(number, name) of the chosen sections (comma-separated; all by default), or SpecError."""
    names = [n.strip() for n in sections.split(",") if n.strip()] if sections else list(COURSE)
    for name in names:
        if name not in COURSE:
            close = difflib.get_close_matches(name, COURSE, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SpecError(f"unknown section {name!r}{hint}; choose from: {', '.join(COURSE)}")
    return [(i + 1, name) for i, name in enumerate(COURSE) if name in names]


def snippet_spec(name: str, teach: bool = False, lang: str = "en") -> tuple[Snippet, ProjectSpec]:
    """The snippet of that name and the spec its templates render with, or SpecError."""
    if name not in SNIPPET_BY_NAME:
        close = difflib.get_close_matches(name, SNIPPET_BY_NAME, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SpecError(
            f"unknown snippet {name!r}{hint}; choose one of: {', '.join(SNIPPET_BY_NAME)}"
        )
    snippet = SNIPPET_BY_NAME[name]
    return snippet, build_spec(
        "snippet", teach=teach, lang=_check_choice(OPTION_BY_NAME["lang"], lang), **snippet.options
    )
