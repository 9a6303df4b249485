"""Evaluates a trained model on a data set and writes report.json, report.md and confusion_matrix.png.

    python examples/evaluate.py --model outputs/fpl-embedded --output_dir outputs/report
    python examples/evaluate.py --model outputs/voc --dataset voc --data_root VOCdevkit/VOC2012 \
        --mode slide --crop_size 512                # or --mode center --crop_size 513 (AEL's protocol)
    python examples/evaluate.py --model outputs/mine --dataset folders --num_labels 8 \
        --validation_images_dir val/images --validation_masks_dir val/masks
    python examples/evaluate.py --model outputs/fpl-camvid --dataset camvid --data_root CamVid --validation_split test

The data flags are run_fpl.py's (`DataSource`); only the validation part is read. Images are resized as the model's
image processor says (a run with --image_size trained and evaluated at that size), and scored at their masks' size.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation, HfArgumentParser

import fpl_hf  # noqa: F401  (registers the Auto classes)
from fpl_hf.data import DataSource, load_evaluation_data
from fpl_hf.evaluation import EvaluationProtocol, evaluate_model, resized_longer_side, write_report


@dataclass
class EvaluationArguments:
    model: str = field(metadata={"help": "Model directory or Hub id."})
    mode: str = field(default="whole", metadata={"help": "'whole', 'slide' or 'center' (see EvaluationProtocol)."})
    crop_size: int | None = field(default=None, metadata={"help": "slide / center: window or crop side."})
    stride: int | None = field(default=None, metadata={"help": "slide: window step (default 2/3 of the crop)."})
    flip: bool = field(default=False, metadata={"help": "Average with the flipped prediction."})
    image_size: int | None = field(
        default=None,
        metadata={
            "help": "Resize each image so that its longer side has this many pixels, as training did; default the "
            "size the model's image processor resizes to (a run with --image_size saves it), else none."
        },
    )
    output_dir: str = field(default="outputs/report", metadata={"help": "Where the report goes."})


def main(argv: list[str]) -> None:
    parser = HfArgumentParser((EvaluationArguments, DataSource))
    args, data_source = parser.parse_args_into_dataclasses(args=argv)
    model = AutoModelForSemanticSegmentation.from_pretrained(args.model)
    processor = AutoImageProcessor.from_pretrained(args.model)
    image_size = args.image_size or resized_longer_side(processor)
    try:
        protocol = EvaluationProtocol(args.mode, args.crop_size, args.stride, args.flip, image_size=image_size)
    except ValueError as error:
        parser.error(str(error))
    dataset = load_evaluation_data(data_source)
    confusion = evaluate_model(
        model, dataset, image_mean=processor.image_mean, image_std=processor.image_std, protocol=protocol
    )
    names = [model.config.id2label[index] for index in range(model.config.num_labels)]
    report = write_report(
        confusion, names, args.output_dir, protocol=protocol, model_name=args.model, dataset_name=data_source.dataset
    )
    print(
        f"mIoU {100 * report['mean_iou']:.2f} on {len(dataset)} images ({protocol.description}); "
        f"report in {args.output_dir}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
