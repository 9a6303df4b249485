"""Flags and YAML keys of a training script: `HfArgumentParser` over its dataclasses and `FPLConfig`, with each
registered framework's and loss's own options as flags of their own."""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.util
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser
from transformers.utils import logging

from .fpl_config import FPLConfig
from .frameworks import FRAMEWORKS
from .unsupervised_losses import UNSUPERVISED_LOSSES

logger = logging.get_logger(__name__)


def load_config(path: Path) -> dict[str, Any]:
    """The keys of a YAML config; a `base: other.yaml` key (relative to the file) supplies the keys it omits, and a
    `preset: NAME` key the preset's keys over the base's and under the file's own."""
    if not path.is_file():
        raise FileNotFoundError(f"Config {path} does not exist (named by --config or by a `base:` key).")
    values = yaml.safe_load(path.read_text()) or {}
    base = values.pop("base", None)
    inherited = load_config(path.parent / base) if base else {}
    if values.get("preset"):
        inherited.update(load_preset(values["preset"]))
    return {**inherited, **values}


PRESETS_DIR = Path(__file__).resolve().parents[1] / "presets"


def preset_names() -> list[str]:
    return sorted(path.stem for path in PRESETS_DIR.glob("*.yaml"))


def load_preset(name: str) -> dict[str, Any]:
    """The keys of a named preset (`fpl_hf/presets/NAME.yaml`)."""
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"Unknown preset {name!r}; the presets are {preset_names()}.")
    return load_config(path)


def flag_value(argv: list[str], flag: str) -> str | None:
    """The value `argv` gives `flag` (`--flag VALUE` or `--flag=VALUE`), before any parsing; None where absent."""
    for position, word in enumerate(argv):
        if word == flag and position + 1 < len(argv):
            return argv[position + 1]
        if word.startswith(flag + "="):
            return word.split("=", 1)[1]
    return None


def import_plugins(argv: list[str]) -> list[str]:
    """Imports the files or modules named by `--plugin` (frameworks and losses they register become choices, their
    options flags) and returns `argv` without them."""
    if "--plugin" not in argv:
        return argv
    position = argv.index("--plugin")
    end = next((index for index in range(position + 1, len(argv)) if argv[index].startswith("--")), len(argv))
    for name in argv[position + 1 : end]:
        path = Path(name).resolve()
        if path.suffix == ".py":
            if not path.is_file():
                raise FileNotFoundError(f"--plugin {name}: no such file.")
            if getattr(sys.modules.get(path.stem), "__file__", None) == str(path):
                continue  # imported already: its entries are registered
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = sys.modules[path.stem] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            importlib.import_module(name)
    return import_plugins(argv[:position] + argv[end:])


def _option_fields() -> dict[str, tuple[type, dataclasses.Field]]:
    """Every option of every registered framework and loss, by name (an option two entries share is one flag)."""
    fields: dict[str, tuple[type, dataclasses.Field]] = {}
    for entry in [*FRAMEWORKS.values(), *UNSUPERVISED_LOSSES.values()]:
        hints = typing.get_type_hints(entry.options)
        for option in dataclasses.fields(entry.options):
            known = fields.get(option.name)
            if known is not None and (known[0], known[1].default) != (hints[option.name], option.default):
                raise ValueError(
                    f"Option {option.name!r} of {entry.name!r} clashes with another entry's option of the "
                    "same name and another type or default: rename one of them."
                )
            fields[option.name] = (hints[option.name], option)
    return fields


class FPLArgumentParser(HfArgumentParser):
    """Parses `dataclass_types` (one of them `FPLConfig`) from flags, with a YAML config file's keys as defaults.

    The options of every registered framework and loss are flags and YAML keys too (`--threshold 0.95`,
    `--feature_dropout 0.3`); those of the chosen framework and loss become `framework_options` and `loss_options`,
    and an option given for another one is named in a warning.
    """

    def __init__(self, dataclass_types: Sequence[type]):
        if FPLConfig not in dataclass_types:
            raise ValueError("`dataclass_types` must hold FPLConfig.")
        self.option_fields = _option_fields()
        options = dataclasses.make_dataclass(
            "MethodOptions",
            [
                (
                    name,
                    kind,
                    dataclasses.field(
                        default=option.default, default_factory=option.default_factory, metadata=option.metadata
                    ),
                )
                for name, (kind, option) in self.option_fields.items()
            ],
        )
        self.config_types = list(dataclass_types)
        super().__init__([*dataclass_types, options])
        self.add_argument(
            "--config", help="A YAML file of defaults (any flag as a key; `base: other.yaml` extends one)."
        )
        self.add_argument(
            "--preset",
            choices=preset_names(),
            help="A named recipe whose keys become defaults: as a flag, over the config file's keys; as a key of a "
            "config file, over its base's keys and under its own; flags override it either way. 'medical': grey "
            "slices whose classes depend on where a pixel is (one input channel, no CutMix).",
        )
        self.add_argument(
            "--plugin",
            nargs="+",
            help="Python files or modules to import first: the frameworks and losses "
            "they register become choices of --framework and --unsup_loss, their options flags.",
        )

    def error(self, message: str) -> typing.NoReturn:
        """argparse's error, with a one-line usage instead of all the flags, and for a flag it does not know the
        nearest ones (`--learnin_rate`: did you mean --learning_rate?)."""
        flags = {}  # each flag by its name with dashes as underscores, spelt as the dataclass field is
        for flag in (flag for action in self._actions for flag in action.option_strings if flag[:2] == "--"):
            flags.setdefault(flag.replace("-", "_"), flag)
        words = message.partition("unrecognized arguments:")[2].split()
        near = {
            word: [flags[match] for match in difflib.get_close_matches(word.replace("-", "_"), flags, 2, 0.8)]
            for word in words
            if word.startswith("--")
        }
        hints = "; ".join(f"{word}: did you mean {' or '.join(found)}?" for word, found in near.items() if found)
        print(f"usage: {self.prog} [--config FILE] [--FLAG VALUE ...] ({self.prog} --help lists them)", file=sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}{f' ({hints})' if hints else ''}\n")

    def parse_with_config(self, argv: list[str], default_config: Path | None = None) -> tuple:
        """One instance of each dataclass type, from `argv`; `--config FILE` (default `default_config`) gives the
        defaults that flags override. `--plugin` must have been handled by `import_plugins` before this parser was
        built."""
        given = flag_value(argv, "--config")  # `--config FILE` or `--config=FILE`; the parser's own flag drops it
        config_path = Path(given) if given is not None else default_config
        if config_path is not None:
            defaults = load_config(config_path)
            unknown = sorted(set(defaults) - ({action.dest for action in self._actions} - {"config", "plugin", "help"}))
            if unknown:
                raise ValueError(f"{config_path}: unknown keys {unknown}.")
            self.set_defaults(**defaults)
        preset = flag_value(argv, "--preset")
        if preset is not None:
            if preset not in preset_names():
                self.error(f"argument --preset: unknown preset {preset!r}; the presets are {preset_names()}.")
            self.set_defaults(**load_preset(preset))
        namespace, remaining = self.parse_known_args(argv)
        if remaining:
            self.error(f"unrecognized arguments: {' '.join(remaining)}")
        values = vars(namespace)
        values.pop("config"), values.pop("plugin"), values.pop("preset")
        options = {name: values.pop(name) for name in self.option_fields}
        for kind, entries in (("framework", FRAMEWORKS), ("unsup_loss", UNSUPERVISED_LOSSES)):
            entry = entries.get(values[kind])
            if entry is None:  # FPLConfig names the choices
                continue
            own = {option.name for option in dataclasses.fields(entry.options)}
            field = "framework_options" if kind == "framework" else "loss_options"
            if values[field] is None:
                values[field] = {name: options[name] for name in own}
            for name in set(options) - own:
                default = self.get_default(name)  # a config's value: a recipe may set options for all frameworks
                foreign = [
                    other.name
                    for other in entries.values()
                    if name in {option.name for option in dataclasses.fields(other.options)}
                ]
                if foreign and options[name] != default:
                    logger.warning(
                        f"--{name} {options[name]} is an option of {kind} {' or '.join(foreign)}; this run's "
                        f"{kind} {values[kind]!r} does not use it."
                    )
        return tuple(
            kind(**{field.name: values[field.name] for field in dataclasses.fields(kind) if field.init})
            for kind in self.config_types
        )


__all__ = ["FPLArgumentParser", "flag_value", "import_plugins", "load_config"]
