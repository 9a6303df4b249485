"""Evaluates a trained model on a data set and writes report.json, report.md and confusion_matrix.png.

    python examples/evaluate.py --model outputs/fpl-embedded --output_dir outputs/report
    python examples/evaluate.py --model outputs/voc --dataset voc --data_root VOCdevkit/VOC2012 \
        --mode slide --crop_size 512                # or --mode center --crop_size 513 (AEL's protocol)
"""

from __future__ import annotations

import argparse

from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

import fpl_hf  # noqa: F401  (registers the Auto classes)
from fpl_hf.data import DataSource, load_evaluation_data
from fpl_hf.evaluation import EVALUATION_MODES, EvaluationProtocol, evaluate_model, write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="Model directory or Hub id.")
    parser.add_argument("--dataset", default="embedded", help="embedded, voc, cityscapes, folders, or a datasets name.")
    parser.add_argument("--data_root")
    parser.add_argument("--images_dir", help="folders: images.")
    parser.add_argument("--masks_dir", help="folders: masks.")
    parser.add_argument("--split", default="validation", help="Split of a datasets data set.")
    parser.add_argument("--num_scenes", type=int, default=200, help="embedded: validation scenes.")
    parser.add_argument("--mode", default="whole", choices=EVALUATION_MODES,
                        help="whole images, sliding window or center crop (see EvaluationProtocol).")
    parser.add_argument("--crop_size", type=int, help="slide / center: window or crop side.")
    parser.add_argument("--stride", type=int, help="slide: window step (default 2/3 of the crop).")
    parser.add_argument("--flip", action="store_true", help="Average with the flipped prediction.")
    parser.add_argument("--output_dir", default="outputs/report")
    args = parser.parse_args()
    try:
        protocol = EvaluationProtocol(args.mode, args.crop_size, args.stride, args.flip)
    except ValueError as error:
        parser.error(str(error))

    model = AutoModelForSemanticSegmentation.from_pretrained(args.model)
    processor = AutoImageProcessor.from_pretrained(args.model)
    dataset = load_evaluation_data(DataSource(
        args.dataset, data_root=args.data_root, validation_images_dir=args.images_dir,
        validation_masks_dir=args.masks_dir, validation_split=args.split, num_validation_scenes=args.num_scenes,
    ))
    confusion = evaluate_model(
        model, dataset, image_mean=processor.image_mean, image_std=processor.image_std, protocol=protocol
    )
    names = [model.config.id2label[index] for index in range(model.config.num_labels)]
    report = write_report(confusion, names, args.output_dir, protocol=protocol, model_name=args.model,
                          dataset_name=args.dataset)
    print(f"mIoU {100 * report['mean_iou']:.2f} on {len(dataset)} images ({protocol.description}); "
          f"report in {args.output_dir}")


if __name__ == "__main__":
    main()
