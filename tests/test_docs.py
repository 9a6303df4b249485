"""The documentation site: the commands its pages tell a user to run work (the journey pages' at a tiny size, every
other page's flags parse), and the configuration page is generated from the code."""

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, TINY_MODEL_FLAGS, run_fpl
from PIL import Image

from fpl_hf.trainer.argument_parser import FPLArgumentParser

_spec = importlib.util.spec_from_file_location("compare", ROOT / "examples" / "compare.py")
compare = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare)

DOCS = ROOT / "docs"
BIN = Path(sys.executable).parent
SCRIPTS = ("run_fpl.py", "compare.py", "evaluate.py", "predict.py", "fpl_pictures.py")
# A run of two steps of a tiny random model, one evaluation: what every documented training command gets appended.
TINY_RUN = [
    *TINY_MODEL_FLAGS,
    *"--max_steps 2 --burn_in_steps 1 --unsup_rampup_steps 0 --eval_steps 2 --save_steps 2 --logging_steps 1".split(),
    *"--num_train_scenes 24 --num_validation_scenes 2 --per_device_train_batch_size 2 --disable_tqdm true".split(),
]


def shell_lines(page: Path) -> list[str]:
    """The lines of a page's ```bash blocks."""
    return [
        line
        for block in re.findall(r"^```bash\n(.*?)^```", page.read_text(), re.M | re.S)
        for line in block.splitlines()
    ]


def documented_commands(page: Path) -> list[list[str]]:
    """The shell commands in a page's ```bash blocks that run a script of examples/, continuation lines joined,
    comments dropped, split into words (the part after `&&` where a setup step comes first)."""
    commands, current = [], ""
    for line in shell_lines(page):
        if not (current or re.search(r"\.venv/bin|^\s*(bash|python)", line)):
            continue
        body = line.strip()
        body = body[: body.index(" #")] if " #" in body else body
        current += " " + body.rstrip("\\").strip()
        if not body.endswith("\\"):
            command = current.split("&&")[-1].strip()
            if any(f"examples/{script}" in command for script in SCRIPTS):
                commands.append(shlex.split(command))
            current = ""
    return commands


def runnable(words: list[str]) -> list[str]:
    """`.venv/bin/...` as this interpreter's environment has it."""
    return [str(BIN / word.removeprefix(".venv/bin/")) if word.startswith(".venv/bin/") else word for word in words]


def write_my_data(root: Path) -> None:
    """The folders the "Your own data" page names: grey slices of 8 classes, labeled, unlabeled and validation."""
    rng = np.random.default_rng(0)
    for part, count, masks in (("train", 4, True), ("raw", 4, False), ("val", 2, True)):
        (root / "my_data" / part / "images").mkdir(parents=True)
        if masks:
            (root / "my_data" / part / "masks").mkdir()
        for index in range(count):
            mask = rng.integers(0, 8, (24, 32), dtype=np.uint8)
            Image.fromarray((mask * 30).astype(np.uint8)).save(root / "my_data" / part / "images" / f"{index}.png")
            if masks:
                Image.fromarray(mask).save(root / "my_data" / part / "masks" / f"{index}.png")


def run_in(folder: Path, words: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(runnable(words), cwd=folder, capture_output=True, text=True, env=env, timeout=900)


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    """A folder where the documented commands run as in the repository root: examples/ and scripts linked."""
    for name in ("examples", "scripts", "splits"):
        (tmp_path / name).symlink_to(ROOT / name)
    write_my_data(tmp_path)
    return tmp_path


def tiny(words: list[str]) -> list[str]:
    script = next(word for word in words if word.endswith(SCRIPTS))
    if script.endswith("run_fpl.py"):
        return [*words, *TINY_RUN]
    if script.endswith("compare.py"):
        return [*words, *TINY_RUN, "--seeds", "0", "--draws", "0", "--jobs", "1"]
    return words


def run_pages(workspace: Path, pages: list[str], scripts: list[str]) -> None:
    """Runs, at a tiny size, every command of `pages`, which must be those of `scripts` in that order."""
    commands = [words for page in pages for words in documented_commands(DOCS / page)]
    assert [next(Path(word).name for word in words if word.endswith(SCRIPTS)) for words in commands] == scripts
    for words in commands:
        result = run_in(workspace, tiny(words))
        assert result.returncode == 0, (words, result.stderr[-3000:])


def test_the_getting_started_and_your_own_data_pages_commands_run_at_a_tiny_size(workspace):
    run_pages(
        workspace,
        ["getting-started.md", "your-data.md"],
        ["run_fpl.py", "compare.py", "run_fpl.py", "evaluate.py", "predict.py"],
    )
    assert (workspace / "outputs" / "mine" / "model.safetensors").is_file()
    assert (workspace / "outputs" / "compare-mine" / "table.md").is_file()
    assert (workspace / "outputs" / "report" / "report.json").is_file()
    assert len(list((workspace / "outputs" / "predictions").rglob("*.png"))) >= 4


def test_every_other_documented_training_command_parses(tmp_path):
    journey = {"getting-started.md", "your-data.md", "medical.md"}
    checked = 0
    for page in sorted(DOCS.glob("*.md")):
        for words in documented_commands(page):
            if page.name in journey or not any(word.endswith(("run_fpl.py", "compare.py")) for word in words):
                continue
            flags = words[next(i for i, word in enumerate(words) if word.endswith(("run_fpl.py", "compare.py"))) + 1 :]
            if "--config" in flags and not (ROOT / flags[flags.index("--config") + 1]).is_file():
                position = flags.index("--config")  # a file of the user's own, e.g. my_voc.yaml
                flags = flags[:position] + flags[position + 2 :]
            if any(word.endswith("compare.py") for word in words):
                _, flags = compare.argument_parser().parse_known_args(flags)
            parser = FPLArgumentParser([run_fpl.ModelArguments, run_fpl.DataSource, run_fpl.FPLConfig])
            os.chdir(ROOT)
            parser.parse_with_config([*flags, "--output_dir", str(tmp_path)], run_fpl.DEFAULT_CONFIG)
            checked += 1
    assert checked >= 8


def test_the_configuration_page_lists_every_option_of_the_code():
    sys.path.insert(0, str(DOCS))
    from hooks import configuration_markdown, configuration_page

    # The page as committed (read on GitHub too) is the page the code writes now.
    assert (DOCS / "configuration.md").read_text() == configuration_page(), "run `python docs/hooks.py`"

    from fpl_hf.trainer import FRAMEWORKS, UNSUPERVISED_LOSSES

    text = configuration_markdown()
    for name in ("--image_size", "--strong_view_kind", "--num_channels", "--dataset", "--burn_in_steps"):
        assert f"`{name}`" in text
    for entry in [*FRAMEWORKS.values(), *UNSUPERVISED_LOSSES.values()]:
        assert entry.name in text and entry.description in text
    assert "`medical`" in text


@pytest.mark.skipif(
    not Path("/usr/share/mricron/templates/inia19-NeuroMaps.nii.gz").is_file() and "FPL_INIA19_DIR" not in os.environ,
    reason="mricron-data absent (scripts/setup.sh --test installs it)",
)
def test_the_medical_pages_commands_run_at_a_tiny_size(workspace):
    run_pages(
        workspace, ["medical.md"], ["compare.py", "run_fpl.py", "evaluate.py", "run_fpl.py", "compare.py", "compare.py"]
    )
    assert (workspace / "outputs" / "medical" / "model.safetensors").is_file()
    assert (workspace / "outputs" / "medical-report" / "report.json").is_file()
    assert (workspace / "outputs" / "fpl-inia19" / "model.safetensors").is_file()
    table = (workspace / "outputs" / "compare" / "table.md").read_text()
    assert "all labels (oracle)" in table and "unimatch_v2 + ce" in table
    # Self-training from the labels-only models of that comparison.
    run = workspace / "outputs" / "compare-inia19-from-labels" / "runs" / "unimatch_v2___fpl-draw0-seed0"
    assert "outputs/compare/runs/labels_only-draw0-seed0" in (run / "README.md").read_text()  # the card's start


def test_the_camvid_pages_commands_run_at_a_tiny_size_on_a_fake_tree(workspace):
    from test_camvid import write_camvid

    write_camvid(workspace / "CamVid", {"train": 13, "val": 2, "test": 2})  # the config labels 11
    run_pages(workspace, ["camvid.md"], ["compare.py", "run_fpl.py", "evaluate.py", "evaluate.py"])
    results = json.loads((workspace / "outputs" / "compare-camvid" / "results.json").read_text())
    assert {r["setting"] for r in results if not r.get("failed")} == {
        "labels only",
        "all labels (oracle)",
        *(f"{framework} + {loss}" for framework in ("unimatch_v2", "mean_teacher", "cps") for loss in ("fpl", "ce")),
    }
    # The model trained at a longer side of 240 is scored so, on the test split's images, at their masks' size.
    report = json.loads((workspace / "outputs" / "camvid-test" / "report.json").read_text())
    assert report["evaluation"]["image_size"] == 240
    masks = [np.asarray(Image.open(path)) for path in sorted((workspace / "CamVid" / "testannot").iterdir())]
    assert sum(values["pixels"] for values in report["per_class"].values()) == sum((m != 11).sum() for m in masks)


def heading_anchors(page: Path) -> set[str]:
    """The anchors of a page's headings as the site makes them (lower case, punctuation dropped, spaces as dashes)."""
    return {anchor_of(heading) for heading in re.findall(r"^#+ (.+)$", page.read_text(), flags=re.MULTILINE)}


def test_every_link_and_pointer_names_a_page_and_heading_that_exist():
    pages = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    broken = []
    for page in pages:
        text = page.read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://", "mailto:")) or target.endswith((".png", ".jpg", ".svg")):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked):
                broken.append(f"{page.name}: {target} (no such heading)")
    # Prose pointers at a titled section: README, "Title" and "Title" below (in pages, scripts, configs, the package).
    sources = [*pages, *ROOT.glob("examples/**/*.py"), *ROOT.glob("examples/**/*.yaml"), *ROOT.glob("fpl_hf/**/*.py")]
    for source in sources:
        text = source.read_text()
        pointers = [(ROOT / "README.md", title) for title in re.findall(r'README, "([^"]+)"', text)]
        pointers += [(source, title) for title in re.findall(r'"([A-Z][^"]{2,60})" below', text)]
        for page, title in pointers:  # a heading named by its whole title or its beginning
            if not any(anchor.startswith(anchor_of(title)) for anchor in heading_anchors(page)):
                broken.append(f"{source.name}: {page.name}, {title!r} (no such heading)")
    assert not broken, broken


def anchor_of(title: str) -> str:
    return re.sub(r"\s+", "-", re.sub(r"[^\w\s-]", "", title).strip().lower())


@pytest.mark.parametrize("framework", ["unimatch", "cps"])
def test_every_logged_key_is_on_the_logged_metrics_page(scenes, tmp_path, framework):
    from conftest import make_trainer

    page = (DOCS / "logged-metrics.md").read_text()
    trainer = make_trainer(scenes, tmp_path, framework=framework, max_steps=2, burn_in_steps=1, eval_strategy="steps")
    trainer.train()
    logged = {key for entry in trainer.state.log_history for key in entry}
    assert {"k1", "pseudo_label_accuracy", "eval_mean_iou", "unsup_weight"} <= logged  # the run logged them
    shown = {key for key in logged if not key.startswith(("eval_iou_", "train_", "total_flos"))}
    missing = [key for key in shown if f"`{key}`" not in page and key not in ("step", "epoch", "grad_norm")]
    missing += [key for key in logged if key.startswith("eval_iou_") and "`eval_iou_<class>`" not in page]
    assert not missing, missing


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/setup.sh installs it)")
def test_the_site_renders_its_equations_offline_from_the_katex_it_ships(tmp_path):
    from playwright.sync_api import sync_playwright

    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    build = [str(BIN / "mkdocs"), "build", "--strict", "--quiet", "--site-dir", str(site)]
    result = subprocess.run(build, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    page_file = site / "frameworks" / "index.html"
    scripts = re.findall(r'<script src="([^"]+)"', page_file.read_text())
    assert "../assets/katex/katex.min.js" in scripts and not [s for s in scripts if s.startswith("http")]
    with sync_playwright() as playwright:  # a file:// page, no server, no network
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto(page_file.as_uri())
        page.wait_for_selector(".katex", timeout=30_000)
        rendered, raw = (
            page.locator(".arithmatex .katex").count(),
            page.locator(".arithmatex:not(:has(.katex))").count(),
        )
        errors = page.locator(".katex-error").count()
        browser.close()
    assert rendered >= 10 and raw == 0 and errors == 0, (rendered, raw, errors)


def test_the_python_quick_start_runs_as_it_is_and_readme_shows_it_whole(tmp_path):
    script = ROOT / "examples" / "quickstart.py"
    code = script.read_text()
    body = code[code.index('"""', 3) + 3 :].lstrip("\n")  # the file less its docstring
    readme = (ROOT / "README.md").read_text()
    assert f"```python\n{body}```" in readme
    assert "--8<--\nexamples/quickstart.py\n--8<--" in (DOCS / "usage.md").read_text()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    trained = re.search(r"^validation mIoU (\d+\.\d+)$", result.stdout, flags=re.MULTILINE)
    reloaded = re.search(r"^reloaded from outputs/quickstart: mIoU (\d+\.\d+)$", result.stdout, flags=re.MULTILINE)
    assert trained and reloaded and trained.group(1) == reloaded.group(1), result.stdout  # saved as it was trained
    assert (tmp_path / "outputs" / "quickstart" / "model.safetensors").is_file()


def test_shell_blocks_are_fenced_highlighted_and_fit_the_column():
    for page in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        text = page.read_text()
        outside_fences = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
        commands = [line for line in outside_fences.splitlines() if re.match(r"^    (\.venv/bin|bash |python )", line)]
        assert not commands, (page.name, commands)  # an indented block: no highlighting, no copy button
        long = [line for line in shell_lines(page) if len(line) > 100]
        assert not long, (page.name, long)


def test_every_documented_launch_is_quiet():
    # Without --quiet, a mistake ends in accelerate's CalledProcessError traceback and our message twice.
    pages = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    launches = [words for page in pages for words in documented_commands(page) if "launch" in words]
    assert len(launches) >= 10
    loud = [" ".join(words) for words in launches if words[words.index("launch") + 1] != "--quiet"]
    assert not loud, loud


def test_the_site_builds_without_torch(tmp_path):
    # `pip install -r docs/requirements.txt` and `mkdocs build`: no torch, no fpl_hf dependency imported.
    blocker = tmp_path / "blocked"
    blocker.mkdir()
    for module in ("torch", "transformers", "timm", "datasets"):
        (blocker / f"{module}.py").write_text(f"raise ImportError('{module} is not installed here')\n")
    env = {**os.environ, "PYTHONPATH": str(blocker), "NO_MKDOCS_2_WARNING": "1"}
    build = [str(BIN / "mkdocs"), "build", "--strict", "--quiet", "--site-dir", str(tmp_path / "site")]
    result = subprocess.run(build, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--crop_size" in (tmp_path / "site" / "configuration" / "index.html").read_text()
    requirements = [line for line in (DOCS / "requirements.txt").read_text().splitlines() if not line.startswith("#")]
    assert any(line.startswith("mkdocs-material") for line in requirements)
    assert not any(line.startswith(("torch", "fpl", "-e", ".")) for line in requirements)
