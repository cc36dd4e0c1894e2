"""litzoo's command line: LightningCLI over the registry, plus `list` and `info`.

    python cli.py list [--family cnn] [--data]
    python cli.py info lenet
    python cli.py fit --model lenet [--data fashion_mnist] [--model.lr 0.05] [--trainer.max_epochs 5]
    python cli.py test --model lenet --ckpt_path best

Registry names are translated to class paths before LightningCLI parses the arguments, so
every LightningCLI convention (--config, --print_config, --trainer.*, class paths) holds.
"""

from __future__ import annotations

import argparse
import sys
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from jsonargparse import ArgumentParser, lazy_instance
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

import datamodules  # noqa: F401  (registers the built-in datamodules)
import lit_modules  # noqa: F401  (registers the built-in models)
from callbacks import (
    AtomicCheckpointIO,
    ClassPredictionWriter,
    ExactResume,
    LatestCheckpoint,
    LearningCurvePlot,
    NonFiniteError,
    StopOnNonFinite,
)
from datamodules.download import DataError
from lit_modules.base import CheckpointMismatchError, HyperparameterError
from registry import DATAMODULES, MODELS, Entry, PluginError, RegistryError, model_info

# Lightning 2.6 calls a torch pytree API that torch 2.13 deprecates; it says nothing to users.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")

RUNS_DIR = Path("runs")
SUBCOMMANDS = ("fit", "validate", "test", "predict")
# Model arguments filled from the chosen datamodule's attribute of the same name.
DATA_LINKED_ARGS = (
    "num_classes",
    "num_inputs",
    "in_channels",
    "image_size",
    "value_range",
    "obs_dim",
    "action_dim",
    "continuous",
    "vocab_size",
    "src_vocab_size",
    "tgt_vocab_size",
)


class UsageError(ValueError):
    """A command line that cannot work; the message says how to fix it."""


@dataclass
class RunPlan:
    """The command line with registry names translated, and what the chosen model implies."""

    args: list[str]
    subcommand: str | None = None
    model: Entry | None = None
    model_class: type | None = None
    data_class: type | None = None
    linked_args: list[str] = field(default_factory=list)

    @property
    def run_name(self) -> str:
        if self.model is not None:
            return self.model.name
        return self.model_class.__name__.lower() if self.model_class else "model"


def _split_option(args: list[str], i: int) -> tuple[str, str | None, int]:
    """(option, value, index after it) for ``--opt value`` and ``--opt=value``."""
    opt, eq, value = args[i].partition("=")
    if eq:
        return opt, value, i + 1
    return opt, (args[i + 1] if i + 1 < len(args) else None), i + 2


def _import_class(class_path: str) -> type | None:
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(__import__(module, fromlist=[name]), name)
    except (ImportError, AttributeError, ValueError):
        return None


def _resolve_class(value: Any, registry: Any) -> Any:
    """A registry name, a registered class name or a {class_path: ...} dict, as a class path."""
    if isinstance(value, dict):
        if "class_path" in value:
            return {**value, "class_path": _resolve_class(value["class_path"], registry)}
        return value
    if not isinstance(value, str) or "." in value or value.startswith(("{", "[")):
        return value
    if value in registry:
        return registry.entry(value).class_path
    by_class_name = [
        registry.entry(n) for n in registry.names() if registry.entry(n).cls.__name__ == value
    ]
    if by_class_name:
        return by_class_name[0].class_path
    registry.entry(value)  # raises RegistryError with the closest names
    return value


def _class_path_of(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("class_path")
    return value if isinstance(value, str) else None


def _checkpoint_class_path(path: Path) -> str | None:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UsageError(
            f"--ckpt_path {path} is not a readable Lightning checkpoint: {err}"
        ) from err
    return checkpoint.get("litzoo_class_path")


def _newest_checkpoint(run_name: str, which: str) -> Path:
    found = sorted(
        RUNS_DIR.glob(f"{run_name}/version_*/checkpoints/{which}.ckpt"),
        key=lambda p: p.stat().st_mtime,
    )
    if not found:
        raise UsageError(
            f"--ckpt_path {which}: no {which}.ckpt under {RUNS_DIR / run_name}/version_*/checkpoints/; "
            f"train first (python cli.py fit --model {run_name}) or give a checkpoint path."
        )
    return found[-1]


def plan_run(argv: list[str], with_subcommand: bool = True) -> RunPlan:
    """Translate registry names in `argv` (options and --config files) to class paths, default
    --data to the model's entry, and resolve --ckpt_path last|best to a file. Without a
    subcommand (LitzooCLI(run=False)) the options start at the first argument."""
    args = list(argv)
    sub = next((i for i, a in enumerate(args) if a in SUBCOMMANDS), None) if with_subcommand else -1
    if sub is None:
        return RunPlan(args)
    values: dict[str, Any] = {}
    i = sub + 1
    while i < len(args):
        opt, value, nxt = _split_option(args, i)
        if opt in ("--model", "--data") and value is not None:
            registry = MODELS if opt == "--model" else DATAMODULES
            translated = _resolve_class(value, registry)
            values[opt[2:]] = translated
            args[i:nxt] = [f"{opt}={translated}"]
            i += 1
        elif opt == "--config" and value is not None and Path(value).is_file():
            config = yaml.safe_load(Path(value).read_text()) or {}
            changed = False
            for key, registry in (("model", MODELS), ("data", DATAMODULES)):
                if key in config:
                    translated = _resolve_class(config[key], registry)
                    changed |= translated != config[key]
                    config[key] = values[key] = translated
            if changed:
                args[i:nxt] = ["--config", yaml.safe_dump(config, sort_keys=False)]
            i += 2 if changed else nxt - i
        elif opt == "--ckpt_path" and value is not None:
            values["ckpt_path"] = (i, nxt, value)
            i = nxt
        else:
            i += 1

    inserted: list[str] = []
    model_path = _class_path_of(values.get("model"))
    if "ckpt_path" in values:
        start, end, ckpt = values["ckpt_path"]
        if ckpt in ("last", "best"):
            if model_path is None:
                raise UsageError(f"--ckpt_path {ckpt} needs --model to know which runs to look in")
            entry = MODELS.entry_for_class(model_path)
            ckpt = str(
                _newest_checkpoint(
                    entry.name if entry else model_path.rsplit(".", 1)[-1].lower(), ckpt
                )
            )
            args[start:end] = [f"--ckpt_path={ckpt}"]
        if Path(ckpt).is_file():
            saved = _checkpoint_class_path(Path(ckpt))
            if saved and model_path and saved != model_path:
                raise UsageError(
                    f"checkpoint {ckpt} was written by {saved}, but --model is {model_path}. "
                    f"Leave --model out (the checkpoint's model is used) or pass a checkpoint of this model."
                )
            if saved and model_path is None:
                model_path = saved
                inserted.append(f"--model={saved}")
        elif ckpt not in ("last", "best", "hpc", "registry") and not ckpt.startswith("registry:"):
            raise UsageError(f"--ckpt_path {ckpt}: no such file")

    entry = MODELS.entry_for_class(model_path) if model_path else None
    data_path = _class_path_of(values.get("data"))
    if data_path is None and entry is not None and entry.data:
        data_path = DATAMODULES.entry(entry.data).class_path
        inserted.append(f"--data={data_path}")
    args[sub + 1 : sub + 1] = inserted

    model_class = _import_class(model_path) if model_path else None
    data_class = _import_class(data_path) if data_path else None
    linked = []
    if model_class is not None and data_class is not None:
        accepted = _init_parameters(model_class)
        linked = [a for a in DATA_LINKED_ARGS if a in accepted and _has_attribute(data_class, a)]
    subcommand = args[sub] if sub >= 0 else None
    return RunPlan(args, subcommand, entry, model_class, data_class, linked)


def _init_parameters(cls: type) -> set[str]:
    """Names of the __init__ arguments jsonargparse resolves for `cls` (through **kwargs too)."""
    parser = ArgumentParser()
    parser.add_class_arguments(cls, "m", fail_untyped=False)
    return set(parser.get_defaults().m.keys())


def _has_attribute(cls: type, name: str) -> bool:
    return any(name in vars(klass) for klass in cls.__mro__)


def _setting_error(err: BaseException) -> ValueError | None:
    """The ValueError a model or datamodule raised for a bad argument, if `err` wraps one."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        raised_in = (
            traceback.extract_tb(err.__traceback__)[-1].filename if err.__traceback__ else ""
        )
        if isinstance(err, ValueError) and "jsonargparse" not in raised_in:
            return err
        err = err.__cause__ or err.__context__
    return None


def _default_callbacks(subcommand: str | None) -> list[L.Callback]:
    """Only the callbacks the subcommand uses: Lightning calls every callback's hooks on every
    step, so idle ones still cost time."""
    if subcommand == "predict":
        return [ClassPredictionWriter()]
    if subcommand in ("validate", "test"):
        return []
    return [
        LearningRateMonitor(logging_interval="epoch"),
        LearningCurvePlot(),
        ExactResume(),
        StopOnNonFinite(),
    ]


class LitzooCLI(LightningCLI):
    """LightningCLI with registry names, entry-driven checkpointing and runs under runs/<model>/."""

    def __init__(self, args: list[str] | None = None, run: bool = True) -> None:
        self.plan = plan_run(sys.argv[1:] if args is None else list(args), with_subcommand=run)
        super().__init__(
            model_class=L.LightningModule,
            datamodule_class=L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=self.plan.args,
            run=run,
            trainer_defaults={
                "logger": lazy_instance(CSVLogger, save_dir=str(RUNS_DIR), name=self.plan.run_name),
                "callbacks": _default_callbacks(self.plan.subcommand),
            },
            save_config_kwargs={"overwrite": True},
            parser_kwargs={
                "description": "litzoo: train, validate, test and predict with any registered model."
            },
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse the translated command line (the plan already holds it)."""
        self.config = parser.parse_args(args)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        entry = self.plan.model
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        # last.ckpt (and its --last_checkpoint.every_n_train_steps) after --checkpoint, so it
        # holds the best-checkpoint state of the same step.
        parser.add_lightning_class_args(LatestCheckpoint, "last_checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": entry.monitor if entry else "val/loss",
                "checkpoint.mode": entry.mode if entry else "min",
                "checkpoint.filename": "best",
                "checkpoint.save_last": False,  # LatestCheckpoint keeps last.ckpt
            }
        )
        parser.add_argument(
            "--early_stopping_patience",
            type=int | None,
            default=None,
            help="Stop fit after this many validations without improvement of the checkpoint monitor.",
        )
        for name in self.plan.linked_args:
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")

    def instantiate_classes(self) -> None:
        """Instantiate as LightningCLI does, but report a rejected setting by its own message
        instead of jsonargparse's wrapper around it."""
        try:
            super().instantiate_classes()
        except ValueError as err:
            cause = _setting_error(err)
            if cause is None:
                raise
            raise UsageError(f"invalid setting: {cause}") from err

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        config = self.config[self.subcommand] if self.subcommand else self.config
        patience = config.get("early_stopping_patience")
        if patience is not None:
            config_init = self.config_init[self.subcommand] if self.subcommand else self.config_init
            early_stop = EarlyStopping(
                monitor=config.checkpoint.monitor, mode=config.checkpoint.mode, patience=patience
            )
            kwargs["callbacks"] = [*(config_init.trainer.get("callbacks") or []), early_stop]
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # not a user's own plugin
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer


def _format_table(rows: list[list[str]]) -> str:
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def list_command(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="cli.py list", description="List registered models.")
    parser.add_argument("--family", help=f"only this family ({', '.join(MODELS.families())})")
    parser.add_argument("--pattern", help="shell-style name pattern, e.g. 'res*'")
    parser.add_argument("--data", action="store_true", help="list datamodules instead of models")
    opts = parser.parse_args(argv)
    if opts.data:
        rows = [["name", "class", "summary"]]
        rows += [
            [n, DATAMODULES.entry(n).class_path, DATAMODULES.entry(n).summary]
            for n in DATAMODULES.names(opts.pattern)
        ]
    else:
        names = MODELS.names(opts.pattern, opts.family)
        if opts.family and not names:
            raise UsageError(
                f"no models in family {opts.family!r}; families: {', '.join(MODELS.families())}"
            )
        rows = [["name", "family", "default data", "parameters"]]
        for name in names:
            info = model_info(name, with_params=True)
            rows.append([name, info["family"], info["data"] or "-", f"{info['parameters']:,}"])
    print(_format_table(rows))


def info_command(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="cli.py info", description="Show a model's entry and hyperparameters."
    )
    parser.add_argument("name")
    opts = parser.parse_args(argv)
    info = model_info(opts.name, with_params=True)
    for key, value in info.items():
        print(f"{key:>11}: {value:,}" if isinstance(value, int) else f"{key:>11}: {value}")
    hparams = ArgumentParser()
    hparams.add_class_arguments(MODELS.entry(opts.name).cls, "model", fail_untyped=False)
    defaults = hparams.get_defaults().model
    rows = [["hyperparameter", "default", "meaning"]]
    for action in hparams._actions:  # argparse keeps the help texts only here
        name = action.dest.removeprefix("model.")
        if name in defaults:
            rows.append(
                [
                    f"--model.{name}",
                    repr(defaults[name]),
                    (action.help or "").split("(type:")[0].strip(),
                ]
            )
    print()
    print(_format_table(rows))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv[:1] == ["list"]:
            list_command(argv[1:])
        elif argv[:1] == ["info"]:
            info_command(argv[1:])
        else:
            LitzooCLI(argv)
    except (
        RegistryError,
        PluginError,
        DataError,
        UsageError,
        HyperparameterError,
        CheckpointMismatchError,
    ) as err:
        print(f"litzoo: error: {err}", file=sys.stderr)
        sys.exit(2)
    except NonFiniteError as err:
        print(f"litzoo: error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
