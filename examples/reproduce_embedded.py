"""README's embedded table: labels alone, the oracle, CPS, the mean teacher and UniMatch V2-style, each with FPL and
with the pseudo-label cross-entropy, over 3 draws of the labeled split x 2 seeds (48 runs, about 6 h on 2 CPU cores).

    python examples/reproduce_embedded.py
    python examples/reproduce_embedded.py --draws 10 11 --seeds 0 --output_dir outputs/development   # other draws
    python examples/reproduce_embedded.py --settings labels_only cps:fpl cps:ce --seeds 0   # some rows
    python examples/reproduce_embedded.py --report_only   # the table of the runs done so far

A thin use of fpl_hf.comparison (`compare.py` is the same for any data set): every run is one run_fpl.py command
on examples/configs/embedded.yaml; further run_fpl.py flags apply to every run. The reported draws are 0, 1 and 2;
README says which draws the recipe was chosen on (never these).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fpl_hf.comparison import Comparison, labels_only, oracle, setting
from fpl_hf.launchers import LocalLauncher

ROWS = {"labels_only": labels_only(), "oracle": oracle()} | {
    f"{framework}:{loss}": setting(framework, loss)
    for framework in ("cps", "mean_teacher", "unimatch_v2")
    for loss in ("ce", "fpl")
}


def main(argv: list[str]) -> Comparison:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", nargs="+", choices=list(ROWS), default=list(ROWS), help="Rows to run.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--draws", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--output_dir", default="outputs/reproduce-embedded")
    parser.add_argument(
        "--report_only", action="store_true", help="Write the table of the runs done so far; run nothing."
    )
    options, run_flags = parser.parse_known_args(argv)
    comparison = Comparison(
        [ROWS[name] for name in options.settings],
        Path(options.output_dir),
        seeds=options.seeds,
        draws=options.draws,
        base_flags=["--eval_steps", "100", "--logging_steps", "20", *run_flags],
        launcher=LocalLauncher(jobs=options.jobs),
    )
    if options.report_only:
        comparison.load()
    else:
        comparison.run()
    comparison.write()
    print(comparison.table())
    return comparison


if __name__ == "__main__":
    main(sys.argv[1:])
