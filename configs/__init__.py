"""The configuration a command line gives: the YAML recipes (configs/<family>/<model>.yaml,
installed with the package), config files (a bad one is refused with its file and line), and
what the command line names before LightningCLI parses it (`make_plan`), and jsonargparse's
settings and complaints in the forms the command line compares and prints."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import Namespace

from callbacks import newest_checkpoint, read_checkpoint_record
from registry import DATAMODULES, MODELS, ConfigurationError, Entry, command_name

RECIPES_DIR = Path(__file__).resolve().parent
RUNS_DIR = Path("runs")  # runs/<model>/version_N, in the current directory
SUBCOMMANDS = ("fit", "validate", "test", "predict")


def recipes() -> list[str]:
    """Short names of the shipped recipes, e.g. ``cnn/lenet``."""
    return sorted(
        str(p.relative_to(RECIPES_DIR).with_suffix("")) for p in RECIPES_DIR.glob("*/*.yaml")
    )


def read_yaml(text: str, where: str) -> dict[str, Any]:
    """The settings in `text`, a YAML mapping; `where` names it in errors."""
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigurationError(
            f"{where} is not valid YAML{line}: {getattr(err, 'problem', None) or err}"
        ) from err
    if not isinstance(loaded, dict):
        raise ConfigurationError(
            f"{where} must be a mapping of settings (model:, data:, trainer:, ...), "
            f"not {type(loaded).__name__}"
        )
    return loaded


def config_file(value: str) -> Path | None:
    """The file that `--config value` names: a path, or a recipe by its short name
    (``cnn/lenet``); None for an inline YAML string."""
    for path in (Path(value), RECIPES_DIR / value, RECIPES_DIR / f"{value}.yaml"):
        if path.is_file():
            return path
    if ":" in value or "{" in value:
        return None
    raise ConfigurationError(
        f"--config {value}: no such file, and no recipe {value!r} "
        f"(`{command_name()} list --configs` lists the recipes)"
    )


def read_config(value: str) -> dict[str, Any]:
    """The settings of a config file, a recipe or an inline YAML string."""
    path = config_file(value)
    if path is None:
        return read_yaml(value, "--config")
    try:
        return read_yaml(path.read_text(encoding="utf-8"), str(path))
    except UnicodeDecodeError as err:
        raise ConfigurationError(f"{path} is not a text (YAML) file: {err}") from err


def named_class(value: Any) -> str | None:
    """The class a --model / --data value names (a name, class name or class path, a
    ``{class_path: ...}`` mapping, or a YAML file or string holding one), as written."""
    if isinstance(value, dict):
        return named_class(value.get("class_path"))
    if not isinstance(value, str):
        return None
    if value.endswith((".yaml", ".yml", ".json")) and Path(value).is_file():
        return named_class(read_config(value))
    if value.lstrip().startswith("{"):
        return named_class(read_yaml(value, value))
    return value


@dataclass
class Plan:
    """What the command line names, read before LightningCLI parses it: the model (for its
    default data, linked dimensions and monitor), the data if named, and the checkpoint."""

    args: list[str]
    subcommand: str | None = None
    model_path: str | None = None
    model: Entry | None = None
    data_path: str | None = None
    ckpt_path: str | None = None
    checkpoint: dict[str, Any] = field(default_factory=dict)

    @property
    def run_name(self) -> str:
        return self.model.name if self.model else (self.model_path or "model").split(".")[-1]


def _class_path(value: Any, registry: Any) -> tuple[str | None, Entry | None]:
    """(class path, registry entry) of what a --model / --data value names."""
    name = named_class(value)
    if name is None:
        return None, None
    entry = registry.entry_for_class(name) or (registry.entry(name) if "." not in name else None)
    return (entry.class_path if entry else name), entry


def make_plan(argv: list[str], with_subcommand: bool = True) -> Plan:
    """Read --model, --data, --config and --ckpt_path (the last one given wins, as in
    parsing), expand recipe names given to --config, and resolve --ckpt_path last|best."""
    args = list(argv)
    start = (
        next((i for i, a in enumerate(args) if a in SUBCOMMANDS), None) if with_subcommand else -1
    )
    if start is None:
        return Plan(args)
    named: dict[str, Any] = {}
    i = start + 1
    while i < len(args):
        option, eq, value = args[i].partition("=")
        value = value if eq else (args[i + 1] if i + 1 < len(args) else None)
        given = value is not None and option in (
            "-c",
            "--config",
            "--model",
            "--data",
            "--ckpt_path",
        )
        if given and option in ("-c", "--config"):
            args[i : i + (1 if eq else 2)] = [f"{option}={config_file(value) or value}"]
            named.update(
                {k: v for k, v in read_config(value).items() if k in ("model", "data", "ckpt_path")}
            )
        elif given:
            named[option[2:]] = value
        i += 1 if eq or not given or option in ("-c", "--config") else 2
    plan = Plan(args, args[start] if start >= 0 else None)
    plan.model_path, plan.model = _class_path(named.get("model"), MODELS)
    asks_for_help = any(a in ("-h", "--help") or a.split("=")[0].endswith(".help") for a in args)
    plan.data_path = _class_path(named.get("data"), DATAMODULES)[0]
    ckpt = named.get("ckpt_path")
    if ckpt in ("last", "best"):
        if plan.model_path is None:
            raise ConfigurationError(
                f"--ckpt_path {ckpt} needs --model to know which runs to look in"
            )
        found = newest_checkpoint(RUNS_DIR / plan.run_name, ckpt, plan.data_path)
        if found is None:
            on = f" trained on {plan.data_path}" if plan.data_path else ""
            raise ConfigurationError(
                f"--ckpt_path {ckpt}: no {ckpt}.ckpt{on} under {RUNS_DIR / plan.run_name}/. Train first "
                f"(`{command_name()} fit --model {plan.run_name}`) or give a checkpoint file."
            )
        ckpt = str(found)
    if ckpt is not None and Path(ckpt).is_file():
        plan.ckpt_path, plan.checkpoint = ckpt, read_checkpoint_record(Path(ckpt))
        saved = plan.checkpoint["hyper_parameters"].get("_class_path")
        if saved and plan.model_path and saved != plan.model_path:
            raise ConfigurationError(
                f"checkpoint {ckpt} was written by {saved}, but --model is {plan.model_path}. Leave "
                "--model out (the checkpoint's model is used) or pass a checkpoint of this model."
            )
        plan.model_path, plan.model = _class_path(plan.model_path or saved, MODELS)
    elif ckpt is not None and ckpt not in ("hpc", "registry") and not ckpt.startswith("registry:"):
        raise ConfigurationError(f"--ckpt_path {ckpt}: no such file")
    if plan.subcommand and plan.model_path is None and not asks_for_help:
        raise ConfigurationError(
            f"{plan.subcommand} needs a model: --model NAME (`{command_name()} list` shows "
            "them), --config FILE or --ckpt_path FILE"
        )
    return plan


def _plain(value: Any) -> Any:
    """A parsed value as a checkpoint records it (mappings as dicts, sequences as lists)."""
    if isinstance(value, tuple):
        return list(value)
    return value.as_dict() if isinstance(value, Namespace) else value


def flat_settings(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested settings as {"optimizer.init_args.momentum": 0.9, ...}."""
    value = _plain(value)
    if not isinstance(value, dict):
        return {prefix: value}
    nested = {f"{prefix}.{key}" if prefix else key: sub for key, sub in value.items()}
    return {k: v for key, sub in nested.items() for k, v in flat_settings(sub, key).items()}


def parser_error_message(text: str) -> str:
    """jsonargparse's nested report of a bad option on one line: the option, the value, why."""
    keys = re.findall(r'Parser key "([^"]+)"', text)
    nested = re.findall(r"NestedArg\(key='([^']+)', val='(.*)'\)", text)
    if nested and nested[-1][0] not in keys:
        keys.append(nested[-1][0])
    lines = [line.strip().lstrip("- ") for line in text.splitlines()]
    given = [line[len("Given value: ") :] for line in lines if line.startswith("Given value: ")]
    noise = ("NoneType", "class_path", "Does not validate", "Subtypes:", "Errors:", "Given value")
    why = [
        line
        for line in lines
        if line and not line.startswith(("Parser key",)) and not any(n in line for n in noise)
    ]
    if not keys:
        return " ".join(text.split())
    value = next((v for v in given if "NestedArg" not in v), nested[-1][1] if nested else "")
    reason = re.sub(r"<class '([\w.]+)'>", r"\1", "; ".join(why))
    return f"--{'.'.join(keys)} {value}: {reason} (`--help` lists the options, `--model.help NAME` a model's)"
