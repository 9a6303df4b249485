"""MkDocs hooks: the configuration page is generated from the code (the run's dataclasses, every registered
framework's and loss's options, the presets), so that it cannot drift from it; the pictures under
benchmarks/results/ are served as results/."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import yaml
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]


def _run_fpl():
    spec = importlib.util.spec_from_file_location("run_fpl", ROOT / "examples" / "run_fpl.py")
    module = sys.modules["run_fpl"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _default(option: dataclasses.Field) -> str:
    if option.default is not dataclasses.MISSING:
        return f"`{option.default!r}`"
    if option.default_factory is not dataclasses.MISSING:
        return f"`{option.default_factory()!r}`"
    return "required"


def options_table(fields: list[dataclasses.Field]) -> str:
    rows = ["| flag / key | default | what it does |", "|---|---|---|"]
    for option in fields:
        rows.append(
            f"| `--{option.name}` | {_cell(_default(option))} | {_cell(dict(option.metadata).get('help', ''))} |"
        )
    return "\n".join(rows)


def configuration_markdown() -> str:
    from fpl_hf.data import DataSource
    from fpl_hf.trainer import FRAMEWORKS, UNSUPERVISED_LOSSES, FPLConfig

    own = [field for field in dataclasses.fields(FPLConfig) if field.name in vars(FPLConfig)["__annotations__"]]
    sections = [
        "## The model (`ModelArguments` of `run_fpl.py`)",
        options_table(dataclasses.fields(_run_fpl().ModelArguments)),
        "## The data (`fpl_hf.data.DataSource`)",
        options_table(dataclasses.fields(DataSource)),
        "## The method (`fpl_hf.trainer.FPLConfig`)",
        "Every field of transformers' `TrainingArguments` is a flag too; these are FPLConfig's own, and those of "
        "TrainingArguments whose defaults it changes to the paper's recipe.",
        options_table(own),
    ]
    for kind, registry in (("Framework", FRAMEWORKS), ("Loss", UNSUPERVISED_LOSSES)):
        for name, entry in registry.items():
            sections.append(f"## {kind} `{name}`\n\n{entry.description}.")
            fields = dataclasses.fields(entry.options)
            sections.append(options_table(fields) if fields else "No options of its own.")
    sections.append("## Presets (`--preset NAME`)")
    for path in sorted((ROOT / "fpl_hf" / "presets").glob("*.yaml")):
        keys = yaml.safe_load(path.read_text())
        listed = ", ".join(f"`{key}: {value}`" for key, value in keys.items())
        sections.append(f"- `{path.stem}`: {listed}")
    return "\n\n".join(sections)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if "<!-- options -->" in markdown:
        return markdown.replace("<!-- options -->", configuration_markdown())
    return markdown


def on_files(files, config):
    results = ROOT / "benchmarks"
    for path in sorted((results / "results").glob("*.png")):
        files.append(File(f"results/{path.name}", str(results), config["site_dir"], config["use_directory_urls"]))
    return files
