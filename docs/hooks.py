"""The site's tools: its MkDocs hook serves the pictures under benchmarks/results/ as results/; as a script,
`python docs/hooks.py` writes the configuration page's options from the code (the run's dataclasses, every
registered framework's and loss's options, the presets). tests/test_docs.py fails when the page and the code differ,
so the page cannot drift, and building the site needs neither torch nor fpl_hf's other dependencies."""

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


OPTIONS_MARKER = "<!-- The options below are written by `python docs/hooks.py` from the code. -->"


def configuration_page() -> str:
    """docs/configuration.md with its options as the code has them now."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    return text[: text.index(OPTIONS_MARKER) + len(OPTIONS_MARKER)] + "\n\n" + configuration_markdown() + "\n"


def on_files(files, config):
    results = ROOT / "benchmarks"
    for path in sorted((results / "results").glob("*.png")):
        files.append(File(f"results/{path.name}", str(results), config["site_dir"], config["use_directory_urls"]))
    return files


if __name__ == "__main__":
    (ROOT / "docs" / "configuration.md").write_text(configuration_page())
