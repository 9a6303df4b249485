"""Pictures of FPL (paper Fig. 3-5): K maps, K shares over training, positive-gradient-score maps.

    python examples/fpl_pictures.py --model outputs/fpl-embedded --output_dir outputs/pictures

The trained model serves as teacher (its fuzzy sets give K) and as student (for R); the K-share curve comes
from the run's trainer_state.json (the newest checkpoint's, or --trainer_state). The data flags are run_fpl.py's
(`DataSource`): `--dataset folders --validation_images_dir ... --validation_masks_dir ... --num_labels N` and the rest.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation, HfArgumentParser

import fpl_hf  # noqa: F401  (registers the Auto classes)
from fpl_hf.data import DataSource, EvaluationDataset, load_evaluation_data
from fpl_hf.losses import fuzzy_positive_assignment, positive_gradient_score
from fpl_hf.modeling.inference import predict_logits
from fpl_hf.viz import gradient_score_figure, k_map_figure, k_shares_figure


@dataclass
class PictureArguments:
    model: str = field(metadata={"help": "Model directory or Hub id."})
    trainer_state: str | None = field(
        default=None, metadata={"help": "trainer_state.json of the run (default: the newest checkpoint's)."}
    )
    images: int = field(default=3, metadata={"help": "How many validation images to draw."})
    threshold: float = field(default=0.9, metadata={"help": "FPL's T for the K maps."})
    semantics: str = field(default="code", metadata={"help": "'code' or 'paper' (see fpl_hf.losses)."})
    output_dir: str = field(default="outputs/pictures", metadata={"help": "Where the pictures go."})


def main(argv: list[str]) -> None:
    args, data_source = HfArgumentParser((PictureArguments, DataSource)).parse_args_into_dataclasses(args=argv)
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    model = AutoModelForSemanticSegmentation.from_pretrained(args.model).eval()
    processor = AutoImageProcessor.from_pretrained(args.model)
    dataset = load_evaluation_data(data_source)
    images = EvaluationDataset(
        dataset, num_labels=model.config.num_labels, image_mean=processor.image_mean, image_std=processor.image_std
    )
    for index in range(min(args.images, len(images))):
        item = images[index]
        with torch.no_grad():
            logits = predict_logits(model, item["pixel_values"][None])
        _, k = fuzzy_positive_assignment(torch.softmax(logits, 1), args.threshold, semantics=args.semantics)
        score, case = positive_gradient_score(
            logits, logits, item["labels"][None], args.threshold, semantics=args.semantics
        )
        image = dataset[index]["image"].convert("RGB")
        k_map_figure(image, k[0].numpy(), output / f"k_map_{index}.png")
        gradient_score_figure(image, score[0].numpy(), case[0].numpy(), output / f"gradient_score_{index}.png")

    state_path = Path(args.trainer_state) if args.trainer_state else None
    if state_path is None:
        checkpoints = sorted(Path(args.model).glob("checkpoint-*/trainer_state.json"), key=lambda p: p.stat().st_mtime)
        state_path = checkpoints[-1] if checkpoints else None
    if state_path is not None:
        k_shares_figure(json.loads(state_path.read_text())["log_history"], output / "k_shares.png")
    print(f"pictures in {output}" + ("" if state_path else " (no trainer_state.json found: no K-share curve)"))


if __name__ == "__main__":
    main(sys.argv[1:])
