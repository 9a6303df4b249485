"""One rank of a multi-process training run (tests/test_distributed.py starts it with torch.distributed.run).

    ddp_worker.py OUTPUT_DIR SETTINGS_JSON

SETTINGS_JSON holds `make_trainer` overrides (FPLConfig fields) and two of its own: "model" ("deeplabv3plus" or
"dpt", which has no BatchNorm) and "stream" (stream the unlabeled pool, in 4 shards). Each rank
writes what it trained on (labeled item indices or unlabeled image digests) and its final parameters to
OUTPUT_DIR/rank{R}.*.
"""

import hashlib
import json
import sys
from pathlib import Path

import torch
from conftest import make_trainer, tiny_dinov2_dpt_config
from safetensors.torch import save_file

from fpl_hf import TimmDPTForSemanticSegmentation
from fpl_hf.data import SemiSupervisedDataset, SemiSupervisedStream, make_fashion_scenes, split_labeled_unlabeled


class RecordingDataset(SemiSupervisedDataset):
    def __init__(self, base: SemiSupervisedDataset):
        self.__dict__.update(base.__dict__)
        self.seen = []

    def __getitem__(self, index):
        self.seen.append(int(index))
        return super().__getitem__(index)


class RecordingStream(SemiSupervisedStream):
    def __init__(self, base: SemiSupervisedStream):
        self.__dict__.update(base.__dict__)
        self.seen = []

    def _unlabeled_examples(self, reader):
        for image, label in super()._unlabeled_examples(reader):
            self.seen.append(hashlib.md5(image.numpy().tobytes()).hexdigest())
            yield image, label


def main(output_dir: str, settings: str) -> None:
    torch.set_num_threads(1)
    overrides = json.loads(settings)
    model_name, stream = overrides.pop("model", "deeplabv3plus"), overrides.pop("stream", False)
    labeled, unlabeled = split_labeled_unlabeled(make_fashion_scenes(64, size=32, seed=0), num_labeled=6, seed=0)
    pool = unlabeled.to_iterable_dataset(num_shards=4) if stream else unlabeled
    scenes = (labeled, pool, make_fashion_scenes(4, size=32, split="validation"))
    torch.manual_seed(0)
    model = TimmDPTForSemanticSegmentation(tiny_dinov2_dpt_config()) if model_name == "dpt" else None
    trainer = make_trainer(scenes, Path(output_dir), model=model, ddp_backend="gloo", **overrides)
    recording = RecordingStream if stream else RecordingDataset
    trainer.train_dataset = recording(trainer.train_dataset)
    trainer.train()
    rank = trainer.args.process_index
    networks = {"model": trainer.accelerator.unwrap_model(trainer.model)}
    if trainer.teacher is not None:
        networks["teacher"] = trainer.teacher
    parameters = {
        f"{key}.{name}": value.detach().contiguous()
        for key, network in networks.items()
        for name, value in network.named_parameters()
    }
    save_file(parameters, str(Path(output_dir) / f"rank{rank}.safetensors"))
    (Path(output_dir) / f"rank{rank}.json").write_text(json.dumps(trainer.train_dataset.seen))


if __name__ == "__main__":
    main(*sys.argv[1:])
