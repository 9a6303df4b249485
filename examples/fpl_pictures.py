"""Pictures of FPL (paper Fig. 3-5): K maps, K shares over training, positive-gradient-score maps.

    python examples/fpl_pictures.py --model outputs/fpl-embedded --output_dir outputs/pictures

The trained model serves as teacher (its fuzzy sets give K) and as student (for R); the K-share curve comes
from the run's trainer_state.json (the newest checkpoint's, or --trainer_state).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

import fpl_hf  # noqa: F401  (registers the Auto classes)
from fpl_hf.data import DataSource, EvaluationDataset, load_evaluation_data
from fpl_hf.modeling.inference import predict_logits
from fpl_hf.losses import fuzzy_positive_assignment, positive_gradient_score
from fpl_hf.viz import gradient_score_figure, k_map_figure, k_shares_figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--trainer_state", help="trainer_state.json of the run (default: newest checkpoint's).")
    parser.add_argument("--dataset", default="embedded")
    parser.add_argument("--data_root")
    parser.add_argument("--images", type=int, default=3, help="How many validation images to draw.")
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--semantics", default="code", choices=["code", "paper"])
    parser.add_argument("--output_dir", default="outputs/pictures")
    args = parser.parse_args()

    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    model = AutoModelForSemanticSegmentation.from_pretrained(args.model).eval()
    processor = AutoImageProcessor.from_pretrained(args.model)
    dataset = load_evaluation_data(DataSource(args.dataset, data_root=args.data_root, num_validation_scenes=args.images))
    images = EvaluationDataset(
        dataset, num_labels=model.config.num_labels, image_mean=processor.image_mean, image_std=processor.image_std
    )
    for index in range(min(args.images, len(images))):
        item = images[index]
        with torch.no_grad():
            logits = predict_logits(model, item["pixel_values"][None])
        _, k = fuzzy_positive_assignment(torch.softmax(logits, 1), args.threshold, semantics=args.semantics)
        score, case = positive_gradient_score(logits, logits, item["labels"][None], args.threshold, semantics=args.semantics)
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
    main()
