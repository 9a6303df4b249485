"""examples/compare.py on a tiny folder data set: every run of the plan, the table, the JSON, the picture, resume."""

import importlib.util
import json
import sys

import pytest
from conftest import ROOT
from PIL import Image
from test_run_fpl import TINY, write_slices

from fpl_hf.comparison import LABELS_ONLY, Comparison, labels_only, setting, swept

_spec = importlib.util.spec_from_file_location("compare", ROOT / "examples" / "compare.py")
compare = sys.modules["compare"] = importlib.util.module_from_spec(_spec)
sys.path.insert(0, str(ROOT / "examples"))  # compare.py imports run_fpl beside it
_spec.loader.exec_module(compare)
sys.path.remove(str(ROOT / "examples"))


def test_compare_runs_each_row_draw_and_seed_and_writes_the_table_json_and_curves(tmp_path, capsys):
    write_slices(tmp_path / "train", 8)
    write_slices(tmp_path / "validation", 3, seed=2)
    output = tmp_path / "comparison"
    flags = [
        "--settings",
        "mean_teacher:fpl",
        "--oracle",
        "--seeds",
        "0",
        "--draws",
        "3",
        "4",
        "--output_dir",
        str(output),
        *TINY,
        "--max_steps",
        "3",
        "--burn_in_steps",
        "1",
        "--eval_strategy",
        "steps",
        "--eval_steps",
        "1",
        "--logging_steps",
        "1",
        "--dataset",
        "folders",
        "--num_labels",
        "8",
        "--images_dir",
        str(tmp_path / "train" / "images"),
        "--masks_dir",
        str(tmp_path / "train" / "masks"),
        "--num_labeled",
        "3",
        "--validation_images_dir",
        str(tmp_path / "validation" / "images"),
        "--validation_masks_dir",
        str(tmp_path / "validation" / "masks"),
    ]
    comparison = compare.main(flags)
    results = json.loads((output / "results.json").read_text())
    assert sorted((r["setting"], r["draw"], r["seed"]) for r in results) == sorted(
        (name, draw, 0) for name in ("labels only", "all labels (oracle)", "mean_teacher + fpl") for draw in (3, 4)
    )
    assert all(len(r["curve"]) == 3 and 0 <= r["final_mean_iou"] <= 1 for r in results)
    semi = [r for r in results if r["setting"] == "mean_teacher + fpl"]
    assert all(len(r["k1_curve"]) == 2 and "pseudo_label_accuracy" in r for r in semi)  # the drawn-away labels

    table = (output / "table.md").read_text()
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()[2:]}
    assert set(rows) == {"labels only", "all labels (oracle)", "mean_teacher + fpl"}
    final = {key: [100 * r["final_mean_iou"] for r in results if r["setting"] == key] for key in rows}
    mean = {key: sum(values) / len(values) for key, values in final.items()}
    assert f"{mean['mean_teacher + fpl']:.2f} +- " in rows["mean_teacher + fpl"]
    assert f"| {mean['mean_teacher + fpl'] - mean['labels only']:+.2f} |" in rows["mean_teacher + fpl"]
    assert "3: " in rows["mean_teacher + fpl"] and "4: " in rows["mean_teacher + fpl"]  # the gain of each draw
    with Image.open(output / "curves.png") as picture:
        assert picture.size == (1200, 450)

    # The same command again finds every run done: nothing runs, the table is the same.
    capsys.readouterr()
    compare.main(flags)
    assert "6 runs, 6 done already, 0 to go" in capsys.readouterr().out
    assert (output / "table.md").read_text() == table and comparison.rows()
    # A smaller plan in the same directory counts only its own runs as done.
    draw_4 = flags.index("4")
    compare.main(flags[:draw_4] + flags[draw_4 + 1 :])
    assert "3 runs, 3 done already, 0 to go" in capsys.readouterr().out


def test_the_gain_compares_each_run_with_labels_only_on_its_own_draw(tmp_path):
    comparison = Comparison([labels_only(), setting("cps", "fpl")], tmp_path)
    run = dict(seconds=60.0, curve=[], k1_curve=[])
    comparison.results = [
        dict(setting=LABELS_ONLY, draw=0, seed=0, final_mean_iou=0.30, **run),
        dict(setting=LABELS_ONLY, draw=1, seed=0, final_mean_iou=0.40, **run),
        dict(setting="cps + fpl", draw=0, seed=0, final_mean_iou=0.35, **run),  # draw 1 not run yet
    ]
    _, cps = comparison.rows()
    assert cps["gain"] == pytest.approx(5.0) and cps["gain_per_draw"] == {0: pytest.approx(5.0)}


def test_fpl_is_compared_with_the_ce_it_replaces_on_the_runs_both_have(tmp_path):
    rows = [labels_only(), *swept([setting("cps", "fpl"), setting("cps", "ce")], "threshold", ["0.9"])]
    comparison = Comparison(rows, tmp_path)
    run = dict(seconds=60.0, curve=[], k1_curve=[])
    comparison.results = [
        dict(setting="cps + fpl, threshold 0.9", draw=0, seed=0, final_mean_iou=0.40, **run),
        dict(setting="cps + fpl, threshold 0.9", draw=0, seed=1, final_mean_iou=0.50, **run),
        dict(setting="cps + fpl, threshold 0.9", draw=1, seed=0, final_mean_iou=0.30, **run),  # no CE run to pair
        dict(setting="cps + ce, threshold 0.9", draw=0, seed=0, final_mean_iou=0.37, **run),
        dict(setting="cps + ce, threshold 0.9", draw=0, seed=1, final_mean_iou=0.49, **run),
    ]
    fpl, ce = comparison.rows()
    assert fpl["versus_replaced"] == pytest.approx(2.0) and fpl["paired_runs"] == 2
    assert "versus_replaced" not in ce
    line = next(line for line in comparison.table().splitlines() if line.startswith("| cps + fpl"))
    assert "| +2.00 (2) |" in line
