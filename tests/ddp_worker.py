"""One rank of a two-process training run (tests/test_trainer.py starts it with torch.distributed.run).

Each rank writes the indices of the items it trained on and its final parameters to OUTPUT_DIR/rank{R}.*.
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from conftest import make_trainer
from fpl_hf.data import SemiSupervisedDataset, make_fashion_scenes, split_labeled_unlabeled


class RecordingDataset(SemiSupervisedDataset):
    def __init__(self, base: SemiSupervisedDataset):
        self.__dict__.update(base.__dict__)
        self.seen = []

    def __getitem__(self, index):
        self.seen.append(int(index))
        return super().__getitem__(index)


def main(framework: str, output_dir: str) -> None:
    torch.set_num_threads(1)
    labeled, unlabeled = split_labeled_unlabeled(make_fashion_scenes(24, size=32, seed=0), num_labeled=6, seed=0)
    scenes = (labeled, unlabeled, make_fashion_scenes(4, size=32, split="validation"))
    trainer = make_trainer(scenes, Path(output_dir), framework=framework, ddp_backend="gloo", max_steps=2)
    trainer.train_dataset = RecordingDataset(trainer.train_dataset)
    trainer.train()
    rank = trainer.args.process_index
    networks = {"model": trainer.accelerator.unwrap_model(trainer.model)}
    if trainer.teacher is not None:
        networks["teacher"] = trainer.teacher
    parameters = {f"{key}.{name}": value.detach().contiguous() for key, network in networks.items()
                  for name, value in network.named_parameters()}
    save_file(parameters, str(Path(output_dir) / f"rank{rank}.safetensors"))
    (Path(output_dir) / f"rank{rank}.json").write_text(json.dumps(trainer.train_dataset.seen))


if __name__ == "__main__":
    main(*sys.argv[1:])
