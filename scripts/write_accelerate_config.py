"""Writes accelerate's default config where the user has none (never over one they have): without a config,
`accelerate launch` prints a notice of the values it defaulted at every launch and asks for `accelerate config`.

    .venv/bin/python scripts/write_accelerate_config.py

accelerate's own default (`accelerate config default`: every GPU of this machine, no mixed precision), except that
`use_cpu` stays false on a machine without a GPU: `use_cpu` forces the CPU where a GPU exists, and set it makes
`accelerate launch` print a notice of the CPU threads it chose. Runs train on the CPU all the same; run_fpl.py takes
every core (`--num_cpu_threads_per_process` aside, accelerate gives a process one thread).
"""

from __future__ import annotations

import json
from pathlib import Path

from accelerate.commands.config.config_args import default_config_file
from accelerate.utils import write_basic_config


def main() -> None:
    path = Path(default_config_file)
    if path.exists():
        print(f"accelerate: your config at {path} is kept.")
        return
    write_basic_config(mixed_precision="no", save_location=str(path))
    config = json.loads(path.read_text())
    config["use_cpu"] = False
    path.write_text(json.dumps(config, indent=2))
    print(f"accelerate: wrote its default config at {path} (accelerate config default; edit with accelerate config).")


if __name__ == "__main__":
    main()
