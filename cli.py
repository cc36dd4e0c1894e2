"""litzoo's command line: LightningCLI over the registry, plus `list` and `info`.

    litzoo list [--family cnn] [--data] [--configs]
    litzoo info lenet                  (a model or a datamodule)
    litzoo fit --model lenet [--data fashion_mnist] [--model.lr 0.05] [--trainer.max_epochs 5]
    litzoo fit --config cnn/lenet      (a recipe shipped in configs/, or any YAML file)
    litzoo test --model lenet --ckpt_path best

LightningCLI parses the command line, so every form it accepts works. litzoo adds registry names
wherever a class is expected, the model's default data, data dimensions passed to the model,
`--ckpt_path last|best`, its default callbacks, and checks that refuse what cannot work before
anything is built. (`python cli.py ...` is the same command in a checkout.)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonargparse._typehints as jsonargparse_typehints
import lightning as L
from jsonargparse import Namespace, lazy_instance
from jsonargparse.typing import NonNegativeInt
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

import datamodules  # noqa: F401  (registers the built-in datamodules)
import lit_modules  # noqa: F401  (registers the built-in models)
from callbacks import AtomicCheckpointIO, LatestCheckpoint, NonFiniteError, default_callbacks
from configs import (
    RECIPES_DIR,
    RUNS_DIR,
    SUBCOMMANDS,
    flat_settings,
    make_plan,
    parser_error_message,
    recipes,
)
from datamodules.download import DATA_ENV, data_root
from registry import (
    DATAMODULES,
    MODELS,
    ConfigurationError,
    PluginWarning,
    check_data_fits,
    command_name,
    configuration_error_in,
    datamodule_info,
    linked_arguments,
    model_info,
    plugin_failures,
    settings,
)

# Lightning 2.6 calls a torch pytree API that torch 2.13 deprecates; it says nothing to users.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


def _with_registry_names(resolve: Callable[[Any, str], str]) -> Callable[[Any, str], str]:
    """jsonargparse looks a class name up among the subclasses of the expected type; this adds
    the registry's short names for models and datamodules, so `--model lenet`, `--model.help
    lenet` and `class_path: lenet` in any config file (or `--model file.yaml`) all work."""

    def resolve_with_registry(cls: Any, name: str) -> str:
        if isinstance(cls, type) and isinstance(name, str) and "." not in name:
            for base, registry in (
                (L.LightningModule, MODELS),
                (L.LightningDataModule, DATAMODULES),
            ):
                if issubclass(cls, base) and name in registry:
                    return registry.entry(name).class_path
        return resolve(cls, name)

    return resolve_with_registry


jsonargparse_typehints.resolve_class_path_by_name = _with_registry_names(
    jsonargparse_typehints.resolve_class_path_by_name
)


class LitzooCLI(LightningCLI):
    """LightningCLI with registry names, data-driven defaults and checks, entry-driven
    checkpointing and runs under runs/<model>/version_N."""

    def __init__(self, args: list[str] | None = None, run: bool = True) -> None:
        self.plan = make_plan(sys.argv[1:] if args is None else list(args), with_subcommand=run)
        no_exit = {"exit_on_error": False}
        try:
            super().__init__(
                model_class=L.LightningModule,
                datamodule_class=L.LightningDataModule,
                subclass_mode_model=True,
                subclass_mode_data=True,
                args=self.plan.args,
                run=run,
                trainer_defaults={
                    "default_root_dir": str(RUNS_DIR / self.plan.run_name),
                    "logger": lazy_instance(
                        CSVLogger, save_dir=str(RUNS_DIR), name=self.plan.run_name
                    ),
                },
                save_config_kwargs={"overwrite": True},
                parser_kwargs={**no_exit, **dict.fromkeys(SUBCOMMANDS, no_exit), **_MAIN_PARSER},
                auto_configure_optimizers=False,  # models choose theirs: --model.optimizer
            )
        except BaseException:
            self._discard_unfinished_run()
            raise

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        entry, checkpoint = self.plan.model, self.plan.checkpoint
        parser.add_class_arguments(ModelCheckpoint, "checkpoint")
        parser.add_class_arguments(LatestCheckpoint, "last_checkpoint")
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
            type=NonNegativeInt | None,
            default=None,
            help="Stop fit after this many validations without improvement of the checkpoint monitor.",
        )
        if self.plan.model_path:  # with a checkpoint, its settings are the defaults
            model = {"class_path": self.plan.model_path, "init_args": self._saved_settings()}
            parser.set_defaults({"model": model})
        data = checkpoint.get("datamodule_hyper_parameters", {})
        if data.get("_class_path") and not self.plan.data_path:  # the data it was trained on
            init_args = {k: v for k, v in data.items() if not k.startswith("_")}
            parser.set_defaults(
                {"data": {"class_path": data["_class_path"], "init_args": init_args}}
            )
        elif entry and entry.data and not self.plan.data_path:
            parser.set_defaults({"data": {"class_path": DATAMODULES.entry(entry.data).class_path}})
        for name in self.linked_dimensions():
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")

    def linked_dimensions(self) -> list[str]:
        """Model arguments that the instantiated datamodule's attributes fill in."""
        return linked_arguments(self.plan.model.cls) if self.plan.model else []

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        try:
            self.config = parser.parse_args(args)
        except argparse.ArgumentError as err:
            raise ConfigurationError(parser_error_message(str(err))) from err
        sub = self.config.get("subcommand")
        config = self.config[sub] if sub else self.config
        if self.plan.ckpt_path:
            config.ckpt_path = self.plan.ckpt_path
            self._check_checkpoint_settings(config)
        model = MODELS.entry_for_class(config.model.class_path)
        data = config.get("data") and DATAMODULES.entry_for_class(config.data.class_path)
        if model and data:
            check_data_fits(model, data)
        if sub in ("validate", "test", "predict") and not config.get("ckpt_path"):
            raise ConfigurationError(
                f"{sub} needs trained weights: pass --ckpt_path best, last or a checkpoint "
                "file (without one it would evaluate an untrained model)"
            )

    def _saved_settings(self) -> dict[str, Any]:
        """The checkpoint's model hyperparameters, less those the data fills in."""
        saved = self.plan.checkpoint.get("hyper_parameters", {})
        linked = self.linked_dimensions()
        return {k: v for k, v in saved.items() if not k.startswith("_") and k not in linked}

    def _check_checkpoint_settings(self, config: Namespace) -> None:
        """The checkpoint's hyperparameters are the model's defaults; a setting that differs
        was given explicitly and is refused, since loading the weights and the optimizer state
        would silently drop it."""
        given, saved = (
            flat_settings(config.model.get("init_args")),
            flat_settings(self._saved_settings()),
        )
        differ = [
            f"--model.{k}={v!r} (checkpoint: {saved[k]!r})"
            for k, v in given.items()
            if k in saved and saved[k] != v
        ]
        if differ:
            raise ConfigurationError(
                f"{', '.join(differ)}: a checkpoint continues with the hyperparameters it was "
                f"trained with ({self.plan.ckpt_path}). Leave these settings out, or start a "
                "new fit without --ckpt_path."
            )
        trained_on = self.plan.checkpoint["datamodule_hyper_parameters"].get("_class_path")
        if trained_on and self.plan.data_path and trained_on != self.plan.data_path:
            warnings.warn(
                f"{self.plan.ckpt_path} was trained on {trained_on}; using {self.plan.data_path} as asked",
                stacklevel=1,
            )

    def _parse_ckpt_path(self) -> None:
        """Done by add_arguments_to_parser and parse_arguments: LightningCLI's version re-reads
        the checkpoint and silently overrides explicit settings."""

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except Exception as err:
            found = configuration_error_in(err)
            if found is None or found is err:
                raise
            raise found from err
        if self.datamodule is not None and not self.datamodule.hparams:
            data = self.config_dump.get("data") or {}
            record = {"_class_path": data.get("class_path"), **(data.get("init_args") or {})}
            self.datamodule.save_hyperparameters(record, logger=False)  # kept in checkpoints

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        config = self._get(self.config_init, "trainer")
        best = self._get(self.config_init, "checkpoint")
        latest = self._get(self.config_init, "last_checkpoint")
        patience = self._get(self.config, "early_stopping_patience")
        kwargs["callbacks"] = [
            *(config.get("callbacks") or []),
            *default_callbacks(self.subcommand, config, best, latest, patience),
        ]
        try:
            trainer = super().instantiate_trainer(**kwargs)
        except MisconfigurationException as err:
            raise ConfigurationError(f"trainer: {err}") from err
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # not a user's own plugin
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        run_dir = Path(trainer.log_dir)
        self._new_dirs = [d for d in (run_dir, *run_dir.parents) if not d.exists()]
        return trainer

    def after_fit(self) -> None:
        best = self.trainer.checkpoint_callback
        if self.trainer.is_global_zero and best is not None and best.best_model_path:
            print(f"best {best.monitor} {float(best.best_model_score):.4f}: {best.best_model_path}")

    def _discard_unfinished_run(self) -> None:
        """A command that failed leaves no run directory with nothing in it but its config."""
        made = getattr(self, "_new_dirs", [])
        if made and made[0].is_dir() and self.trainer.is_global_zero:
            kept = ("config.yaml", "hparams.yaml")
            if not any(p.is_file() and p.name not in kept for p in made[0].rglob("*")):
                shutil.rmtree(made[0])
                for directory in made[1:]:
                    directory.rmdir()


_MAIN_PARSER = {
    "prog": command_name(),
    "description": "litzoo: fit, validate, test and predict with any registered model. Also "
    f"`{command_name()} list` (the models; --data the datamodules, --configs the recipes) and "
    f"`{command_name()} info NAME` (a model's or datamodule's entry and settings).",
}


def _format_table(rows: list[list[str]]) -> str:
    """Aligned columns; the last one wrapped to the terminal's width under its own column."""
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]) - 1)]
    indent = sum(widths) + 2 * len(widths)
    width = max(40, shutil.get_terminal_size((100, 24)).columns - indent)
    lines = []
    for row in rows:
        head = "".join(cell.ljust(w + 2) for cell, w in zip(row, widths, strict=False))
        wrapped = textwrap.wrap(" ".join(row[-1].split()), width) or [""]
        lines += [(head + wrapped[0]).rstrip(), *(" " * indent + more for more in wrapped[1:])]
    return "\n".join(lines)


def list_command(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog=f"{command_name()} list", description="List registered models."
    )
    parser.add_argument("--family", help=f"only this family ({', '.join(MODELS.families())})")
    parser.add_argument("--pattern", help="shell-style name pattern, e.g. 'res*'")
    parser.add_argument("--data", action="store_true", help="list datamodules instead of models")
    parser.add_argument("--configs", action="store_true", help="list the recipes for --config")
    opts = parser.parse_args(argv)
    if opts.configs:
        rows = [["recipe", "what it is"]] + [
            [name, (RECIPES_DIR / f"{name}.yaml").read_text().split("\n")[0].lstrip("# ")]
            for name in recipes()
        ]
    elif opts.data:
        rows = [["name", "kind", "summary"]]
        for name in DATAMODULES.names(opts.pattern):
            info = datamodule_info(name)
            rows.append([name, info["kind"], info["summary"].split(". ")[0]])
    else:
        names = MODELS.names(opts.pattern, opts.family)
        if opts.family and not names:
            raise ConfigurationError(
                f"no models in family {opts.family!r}; families: {', '.join(MODELS.families())}"
            )
        infos = [model_info(name, with_params=True) for name in names]
        rows = [["name", "family", "default data", "parameters"]] + [
            [i["name"], i["family"], i["data"] or "-", f"{i['parameters']:,}"]
            if isinstance(i["parameters"], int)
            else [i["name"], i["family"], i["data"] or "-", "- (info NAME says why)"]
            for i in infos
        ]
    print(_format_table(rows))


def info_command(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog=f"{command_name()} info", description="Describe a model or a datamodule."
    )
    parser.add_argument("name", help="a model or datamodule name (see list, list --data)")
    name = parser.parse_args(argv).name
    if name not in MODELS and name in DATAMODULES:
        info, cls, prefix = datamodule_info(name), DATAMODULES.entry(name).cls, "data"
    else:
        info, cls, prefix = model_info(name, with_params=True), MODELS.entry(name).cls, "model"
    for key, value in info.items():
        shown = f"{value:,}" if isinstance(value, int) else str(value)
        print(f"{key:>11}: " + "\n             ".join(textwrap.wrap(shown, 88) or [""]))
    print()
    rows = [
        ["option", "default", "meaning"],
        *([f"--{prefix}.{k}", repr(v), h] for k, v, h in settings(cls)),
    ]
    print(_format_table(rows))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    warnings.simplefilter("ignore", PluginWarning)  # reported below, once, as our own line
    MODELS.names()  # loads the plug-ins
    for message in plugin_failures():
        print(f"{command_name()}: warning: {message}", file=sys.stderr)
    try:
        if argv[:1] == ["list"]:
            list_command(argv[1:])
        elif argv[:1] == ["info"]:
            info_command(argv[1:])
        else:
            LitzooCLI(argv)
    except ConfigurationError as err:
        _fail(str(err))
    except OSError as err:
        _fail(_os_error_message(err))
    except NonFiniteError as err:  # the run diverged: not a usage error, so not exit 2
        print(f"{command_name()}: error: {err}", file=sys.stderr)
        sys.exit(1)


def _os_error_message(err: OSError) -> str:
    """Where the run could not write or read, and which setting moves it."""
    if not err.filename:
        return f"{err}; runs are written under {RUNS_DIR.absolute()}, datasets under {DATA_ENV}={data_root()}"
    where = Path(str(err.filename)).absolute()
    message = f"cannot use {where}: {err.strerror or err}"
    if data_root().absolute() in where.parents:
        return f"{message}. Datasets live in {DATA_ENV}={data_root()}: point it at a writable directory with free space."
    if RUNS_DIR.absolute() in [where, *where.parents]:
        return f"{message}. Runs are written under {RUNS_DIR}/ in the current directory: run from a writable directory with free space."
    return message


def _fail(message: str) -> None:
    print(f"{command_name()}: error: {message}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
