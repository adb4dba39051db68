"""训练配置：一个 dataclass；每个字段既是一个命令行参数（如 --batch-size），也是 TOML
文件里的一个键。
"""

import argparse
import dataclasses
import difflib
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(ValueError):
    """配置的值或名称有误；命令行只打印一行错误并以退出码 2 结束。"""


# 每个字段的取值范围，在创建 Config 时检查；每项是（报错时的说法，检查条件）。
# 不在这里检查的话，超出 `[0, 1]` 的概率或为 0 的尺寸要到 PyTorch 深处才出错，
# 还会留下一长串 traceback。
RANGES = {
    "batch_size": ("大于等于 1", lambda v: v >= 1),
    "grad_accum_steps": ("大于等于 1", lambda v: v >= 1),
    "log_every": ("大于等于 1", lambda v: v >= 1),
    "eval_every": ("大于等于 1", lambda v: v >= 1),
    "save_every": ("大于等于 1", lambda v: v >= 1),
    "seq_len": ("大于等于 1", lambda v: v >= 1),
    "d_model": ("大于等于 1", lambda v: v >= 1),
    "n_heads": ("大于等于 1", lambda v: v >= 1),
    "n_layers": ("大于等于 1", lambda v: v >= 1),
    "d_ff": ("大于等于 1", lambda v: v >= 1),
    "corpus_chars": ("大于等于 1", lambda v: v >= 1),
    "vocab_size": ("大于等于 1", lambda v: v >= 1),
    "max_steps": ("大于等于 0", lambda v: v >= 0),
    "weight_decay": ("大于等于 0", lambda v: v >= 0),
    "grad_clip": ("大于等于 0", lambda v: v >= 0),
    "min_lr": ("大于等于 0", lambda v: v >= 0),
    "lr": ("大于 0", lambda v: v > 0),
    "warmup_steps": ("大于等于 -1", lambda v: v >= -1),
    "dropout": ("在 [0, 1] 内", lambda v: 0 <= v <= 1),
    "attn_dropout": ("在 [0, 1] 内", lambda v: 0 <= v <= 1),
    "ema_decay": ("在 [0, 1] 内", lambda v: 0 <= v <= 1),
    "betas": ("在 [0, 1) 内", lambda v: 0 <= v < 1),
    "val_fraction": ("在 (0, 1) 内", lambda v: 0 < v < 1),
    "seed": ("在 [0, 2**32) 内", lambda v: 0 <= v < 2**32),
    "num_workers": ("在 0 到 256 之间", lambda v: 0 <= v <= 256),
}
# 40 亿个数：fp32 下就是 16 GB，还没算梯度和优化器状态。
MAX_NUMBERS = 2**32


@dataclass
class Config:
    epochs: int = 5
    max_steps: int = 500
    batch_size: int = 32
    grad_accum_steps: int = 1
    lr: float = 0.001
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    out_dir: str = "runs/default"
    log_every: int = 10
    eval_every: int = 100
    save_every: int = 100
    resume: str = "none"
    init_from: str = ""
    data_path: str = ""
    val_fraction: float = 0.1
    num_workers: int = 0
    overwrite: bool = False
    vocab_size: int = 64
    seq_len: int = 64
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 4
    d_ff: int = 512
    dropout: float = 0.0
    attn_dropout: float = 0.0
    corpus_chars: int = 100000
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup_steps: int = -1
    min_lr: float = 0.0
    ema_decay: float = 0.99

    def __post_init__(self):
        problems = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            values = value if isinstance(value, list) else [value]
            if f.name in RANGES and not all(RANGES[f.name][1](v) for v in values):
                want, text = RANGES[f.name][0], "{name} 必须{want}，而不是 {value}"
                problems.append(text.format(name=f.name, want=want, value=value))
            elif any(isinstance(v, float) and not math.isfinite(v) for v in values):
                text = "{name} 必须是有限的数，而不是 {value}"
                problems.append(text.format(name=f.name, value=value))
        if self.max_steps == 0 and self.epochs < 1:
            text = "max_steps 为 0 时，epochs 必须大于等于 1，而不是 {}"
            problems.append(text.format(self.epochs))
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            text = "device 必须是 auto、cpu、cuda、cuda:N 或 mps，而不是 {!r}"
            problems.append(text.format(self.device))
        if not self.out_dir.strip():
            problems.append("out_dir 必须是一个文件夹名，不能为空字符串")
        if len(self.betas) != 2:
            text = "betas 必须是两个数，而不是 {}"
            problems.append(text.format(self.betas))
        if self.d_model % max(self.n_heads, 1):
            text = "d_model 必须能被 n_heads 整除，现在分别是 {d_model} 和 {n_heads}"
            problems.append(text.format(d_model=self.d_model, n_heads=self.n_heads))
        params, numbers = self.footprint() if not problems else (0, 0)
        smaller = "；请把尺寸调小"
        if params > MAX_NUMBERS:
            text = "模型将有约 {:.2g} 个参数，内存放不下"
            problems.append(text.format(params) + smaller)
        if numbers > MAX_NUMBERS and not self.data_path:
            text = "合成数据将有约 {:.2g} 个数，内存放不下"
            problems.append(text.format(numbers) + smaller)
        if problems:
            raise ConfigError("；".join(problems))

    def footprint(self) -> tuple[int, int]:
        """粗略估算模型的参数量和合成数据里的数值个数，让离谱的尺寸在配置阶段就报错，
        而不是几分钟后内存耗尽才崩溃。
        """
        block = 4 * self.d_model**2 + 2 * self.d_model * self.d_ff
        params = (self.vocab_size + self.seq_len) * self.d_model + self.n_layers * block
        return params, self.corpus_chars


FIELDS = {f.name: f for f in dataclasses.fields(Config)}
# 每个字段的说明：--help 显示它，configs/default.toml 把它写在字段上方。
HELP = {
    "epochs": "遍历训练集的轮（epoch）数（max_steps > 0 时以它为准）",
    "max_steps": "优化器更新的步数；0 表示按 epochs 计算",
    "batch_size": "每个微批次的序列数",
    "grad_accum_steps": "每次优化器更新累积的微批次数（梯度累积）",
    "lr": "峰值学习率",
    "weight_decay": "解耦的权重衰减（不作用于偏置和归一化层）",
    "grad_clip": "把全局梯度范数裁剪到这个值；0 表示不裁剪",
    "seed": "随机种子：决定数据划分、打乱顺序和初始权重",
    "device": "auto（依次尝试 cuda、mps、cpu）、cpu、cuda 或 mps",
    "out_dir": "metrics.jsonl 和 checkpoints/ 写在这个目录",
    "log_every": "每隔这么多步记录一次训练损失",
    "eval_every": "每隔这么多步在验证集上评估一次",
    "save_every": "每隔这么多步写一次 checkpoints/last.pt",
    "resume": "none、auto（即 out_dir/checkpoints/last.pt）或一个检查点路径",
    "init_from": "只从这个检查点加载模型权重（用于微调）",
    "data_path": "你的数据文件或目录；留空则使用合成数据",
    "val_fraction": "留作验证集的数据比例",
    "num_workers": "DataLoader 的工作进程数；0 表示在主进程中加载",
    "overwrite": "在已有运行记录的 out_dir 中从头开始",
    "vocab_size": "词表中的词元数（从数据推断）",
    "seq_len": "上下文长度（词元数）",
    "d_model": "残差流的宽度",
    "n_heads": "注意力头数",
    "n_layers": "Transformer 块的个数",
    "d_ff": "前馈层的宽度",
    "dropout": "嵌入和残差分支上的 dropout 比例",
    "attn_dropout": "注意力权重上的 dropout 比例（为 0 时 SDPA 保持融合算子）",
    "corpus_chars": "合成文本的长度（字符数）",
    "betas": "Adam 的 beta1 和 beta2",
    "warmup_steps": "线性预热的步数；-1 表示总步数的 5%",
    "min_lr": "结束时的学习率",
    "ema_decay": "每一步中旧平均值所占的权重",
}


def _fits(value: object, kind: type) -> bool:
    if isinstance(value, bool):
        return kind is bool
    if kind is float and isinstance(value, int):
        return abs(value) < 1e308  # 超出这个范围的整数，float() 会溢出
    return isinstance(value, kind)


def _coerce(name: str, value: object) -> object:
    """按字段类型检查从 TOML 文件读到的值。"""
    kind = FIELDS[name].type
    if hasattr(kind, "__args__"):  # list[int] 或 list[float] 字段
        item = kind.__args__[0]
        if isinstance(value, list) and all(_fits(v, item) for v in value):
            return [item(v) for v in value]
    elif _fits(value, kind):
        return kind(value)
    message = "{name} 必须是 {kind}，而不是 {value!r}"
    kind = str(kind).removeprefix("<class '").removesuffix("'>")  # int, list[int]
    raise ConfigError(message.format(name=name, kind=kind, value=value))


def _unknown(name: str) -> str:
    close = difflib.get_close_matches(name, FIELDS, n=1)
    maybe = "（是不是想写 {!r}？）"
    hint = " " + maybe.format(close[0]) if close else ""
    message = "未知字段 {name!r}{hint}；可用的字段：{fields}"
    return message.format(name=name, hint=hint, fields=", ".join(FIELDS))


# argparse 自带的提示是英文的：这里把常见的几条换成中文。
ARGPARSE_ZH = [
    (r"unrecognized arguments: ", "无法识别的参数："),
    (r"the following arguments are required: ", "缺少必需的参数："),
    (r"expected one argument", "需要一个值"),
    (r"expected at least one argument", "至少需要一个值"),
    (r"invalid choice: (.*) \(choose from (.*)\)$", r"无效的取值 \1（可选：\2）"),
    (r"ignored explicit argument ", "不接受值："),
    (r"not allowed with argument ", "不能与此参数同用："),
]
SECTIONS_ZH = {"options": "选项", "positional arguments": "位置参数"}


def in_chinese(message: str) -> str:
    for english, chinese in ARGPARSE_ZH:
        message = re.sub(english, chinese, message)
    return message


class Help(argparse.HelpFormatter):
    def add_usage(self, usage, actions, groups, prefix=None):
        super().add_usage(usage, actions, groups, prefix or "用法：")

    def start_section(self, heading):
        super().start_section(SECTIONS_ZH.get(heading, heading))


class Parser(argparse.ArgumentParser):
    """出错时只打印一行、以退出码 2 结束的 argparse 解析器，和配置错误一样；argparse
    自带的解析器会先打印整段用法。
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("formatter_class", Help)
        super().__init__(allow_abbrev=False, add_help=False, **kwargs)
        self.add_argument("-h", "--help", action="help", help="显示这份帮助并退出")

    def error(self, message: str):
        text = "错误：{}（用法见 --help）"
        message = in_chinese(message)
        self.stop(text.format(message.removeprefix("argument ")))

    def stop(self, message: str):
        """以退出码 2 结束，并把这条信息打印成一行：用户输入的值里可能带有换行符。"""
        self.exit(2, " ".join(message.splitlines()) + "\n")


# 命令行参数的值无法解析时给出的提示，按字段类型区分。
NOT_A = {int: "{!r} 不是整数", float: "{!r} 不是数字"}


def flag_type(kind: type):
    """该类型字段在 argparse 中的类型转换：返回转换后的值，否则用一行说明原因。"""

    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(NOT_A[kind].format(text)) from None

    return parse


def out_folder(text: str) -> Path:
    """命令行给出的输出文件夹：名字为空、或路径上有已存在的文件，都是命令写错了，由
    argparse 用一行拒绝。
    """
    path = Path(text)
    on_the_way = (path, *path.parents)
    if not text.strip() or any(p.exists() and not p.is_dir() for p in on_the_way):
        msg = "{!r} 不能作为要写入的文件夹：它为空，或路径上有已存在的文件"
        raise argparse.ArgumentTypeError(msg.format(text))
    return path


def load_config(argv: list[str] | None = None) -> Config:
    """先读取可选的 --config TOML 文件，再用命令行参数（如 --lr 0.01）覆盖其中的值，
    构建 Config。
    未知的名称会被拒绝而不是忽略：否则像 --lrr 0.1
    这样的拼写错误会悄悄地用默认学习率训练，没人会发现。
    """
    parser = Parser(
        description="训练模型。命令行参数优先于 --config 文件。",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--config", help="TOML 配置文件，每行写一个“字段 = 值”")
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        text = HELP[f.name].replace("%", "%%")  # argparse 会用 % 格式化说明文字
        if f.type is bool:
            parser.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, help=text
            )
        elif hasattr(f.type, "__args__"):
            kind = flag_type(f.type.__args__[0])
            parser.add_argument(flag, dest=f.name, type=kind, nargs="+", help=text)
        else:
            kind = flag_type(f.type)
            parser.add_argument(flag, dest=f.name, type=kind, help=text)
    args, unknown = parser.parse_known_args(argv)
    try:
        for arg in unknown:
            if not arg.startswith("--"):
                message = "多余的参数 {!r}"
                raise ConfigError(message.format(arg))
            raise ConfigError(_unknown(arg[2:].split("=")[0].replace("-", "_")))
        values = {}
        path = vars(args).pop("config", None)
        if path is not None:
            # 文件不存在、不是 UTF-8 编码或不是合法的 TOML：报一行错，并写明是哪个文件。
            try:
                with open(path, "rb") as f:
                    table = tomllib.load(f)
            except UnicodeDecodeError:
                msg = "{}：不是 UTF-8 编码的文本"
                raise ConfigError(msg.format(path)) from None
            except (OSError, ValueError) as e:
                raise ConfigError(f"{path}: {e}") from None
            for name, value in table.items():
                if name not in FIELDS:
                    raise ConfigError(f"{path}: " + _unknown(name))
                try:
                    values[name] = _coerce(name, value)
                except ConfigError as e:
                    raise ConfigError(f"{path}: {e}") from None
        values.update(vars(args))
        return Config(**values)
    except (ConfigError, OSError, tomllib.TOMLDecodeError) as e:
        message = "错误：{}"
        parser.stop(message.format(e))
