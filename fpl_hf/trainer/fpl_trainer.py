"""`FPLTrainer`: transformers' Trainer running one semi-supervised framework step per `compute_loss`."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import torch
import torch.nn.functional as F
from accelerate.data_loader import prepare_data_loader
from datasets import Dataset
from torch import nn
from torch.utils.data import DataLoader, RandomSampler
from transformers import Trainer
from transformers.utils import logging

from ..data import (
    IGNORE_INDEX,
    EvaluationDataset,
    SemiSupervisedStream,
    TrainingItems,
    check_run_data,
    faint_border_note,
    prepared_batch,
    semi_supervised_collate,
)
from ..evaluation import StreamedEvaluation
from ..hub import ExplainedHubPushes, ModelCardInfo, write_model_card
from ..losses import ohem_cross_entropy
from ..metrics import ConfusionMatrix
from ..modeling import SegmentationNetwork
from ..modeling.transformers_segmenter import exported, image_processor_for
from ..statistics import pseudo_label_class_counts, pseudo_label_statistics, pseudo_labels_by_class
from .callbacks import DatasetEpochCallback, EMATeacherCallback, ProgressCallback
from .fpl_config import FPLConfig
from .frameworks import PseudoLabelPair
from .frameworks.supervised import step as supervised_step
from .networks import CheckpointedNetworks, ema_teacher, evaluated_network, trained_module
from .optimization import SegmentationOptimizer
from .pictures import TrackerPictures

logger = logging.get_logger(__name__)


class FPLTrainer(ExplainedHubPushes, CheckpointedNetworks, SegmentationOptimizer, StreamedEvaluation, Trainer):
    """Semi-supervised segmentation Trainer; `args.framework` picks the step (and the networks it keeps),
    `args.unsup_loss` the pseudo-label loss.

    Args:
        model: the network to train: fpl_hf's DeepLabv3+ or DPT, or any transformers semantic-segmentation model
            (for CPS it becomes branch 1 of a `BranchPair`).
        args: an `FPLConfig`.
        train_dataset: the training set built for the framework: `fpl_hf.data.training_dataset(labeled, unlabeled,
            **args.train_dataset_options())`, a `SemiSupervisedStream` when the unlabeled pool is streamed.
        eval_dataset: labeled images (`EvaluationDataset`); evaluation streams a confusion matrix.
        model_card_info: what the model card says about the data and the backbone's weights. Every save (each
            checkpoint and the final model) writes the card, with the latest and the best evaluation.
        branch_2: the second network of a framework that trains two (CPS), e.g. another trained model; by default a
            copy of `model` whose head is initialised anew (CPS's two differently initialised branches).
    """

    def __init__(
        self,
        model: nn.Module,
        args: FPLConfig,
        train_dataset=None,
        eval_dataset=None,
        model_card_info: ModelCardInfo | None = None,
        branch_2: nn.Module | None = None,
        **kwargs: Any,
    ):
        if not isinstance(args, FPLConfig):
            raise TypeError(f"`args` must be an FPLConfig, got {type(args).__name__}.")
        if isinstance(train_dataset, SemiSupervisedStream) and args.max_steps <= 0:
            raise ValueError("The unlabeled pool is streamed and has no length: set `max_steps`, the training length.")
        if train_dataset is not None and not isinstance(train_dataset, TrainingItems):
            raise TypeError(
                f"`train_dataset` must be built by `fpl_hf.data.training_dataset`, got {type(train_dataset)}."
            )
        if train_dataset is not None and not args.skip_data_check:
            validation = eval_dataset.dataset if isinstance(eval_dataset, EvaluationDataset) else None
            check_run_data(
                train_dataset.labeled,
                train_dataset.unlabeled,
                validation,
                train_dataset.num_labels,
                train_dataset.palette,
            )
        self.framework, self.schedule = args.framework_declaration, args.schedule
        self.options, self.mixes = args.framework_options, self.framework.mixes(args.cutmix)
        module = trained_module(self.framework, model, branch_2, args.seed)
        if args.channels_last:
            module = module.to(memory_format=torch.channels_last)
        self.num_labels = module.config.num_labels
        if train_dataset is not None and self.framework.unlabeled and not args.skip_data_check:
            names = [module.config.id2label[index] for index in range(self.num_labels)]
            note = faint_border_note(train_dataset.labeled, names, train_dataset.palette)
            if note:
                logger.warning(note)
        self.ignore_index = IGNORE_INDEX  # the data's, whatever name a model config gives its own
        self._confusion = ConfusionMatrix(self.num_labels, self.ignore_index)
        statistics = train_dataset if train_dataset is not None else eval_dataset
        if kwargs.get("processing_class") is None and isinstance(statistics, (TrainingItems, EvaluationDataset)):
            # Saved with every model, so that `pipeline` and `from_pretrained` users preprocess as training did.
            kwargs["processing_class"] = image_processor_for(
                exported(evaluated_network(module)), image_mean=statistics.image_mean, image_std=statistics.image_std
            )
        kwargs.setdefault("data_collator", semi_supervised_collate)
        kwargs.setdefault("compute_metrics", self._stream_metrics)
        kwargs.setdefault("preprocess_logits_for_metrics", lambda logits, labels: logits.argmax(1))
        super().__init__(model=module, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset, **kwargs)
        if hasattr(train_dataset, "set_epoch"):
            self.add_callback(DatasetEpochCallback(train_dataset))
        self.add_callback(ProgressCallback())
        if args.picture_images:
            self.add_callback(TrackerPictures(self, args.picture_images))
        self.teacher = ema_teacher(self.framework, module)
        if self.teacher is not None:
            self.add_callback(EMATeacherCallback(self.teacher, args.ema_decay, self.schedule))
        self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
        self._class_counts: torch.Tensor | None = None  # pseudo_label_class_counts, summed (see pseudo_labels_by_class)
        self.model_card_info = model_card_info or ModelCardInfo()
        self.last_metrics: dict[str, float] | None = None
        self.best_metrics: dict[str, float] | None = None

    def _get_train_sampler(self, train_dataset=None) -> torch.utils.data.Sampler | None:
        """Trainer's, drawing whole batches only (a different subset each epoch), as the released methods' loaders
        drop the last: a last batch of one image would break BatchNorm's statistics."""
        sampler = super()._get_train_sampler(train_dataset)
        if type(sampler) is RandomSampler:
            batch = self._train_batch_size * self.args.world_size
            whole = len(sampler.data_source) // batch * batch
            if whole == 0:
                raise ValueError(
                    f"The training set has {len(sampler.data_source)} items, fewer than one batch of "
                    f"{batch}: lower `per_device_train_batch_size` or give more images."
                )
            sampler = RandomSampler(sampler.data_source, num_samples=whole, generator=sampler.generator)
        return sampler

    def get_train_dataloader(self) -> DataLoader:
        """Trainer's loader; a stream gives each process its own part of the pool (`SemiSupervisedStream.for_process`),
        which accelerate must not split again, so the loader is prepared as one process's."""
        if not isinstance(self.train_dataset, SemiSupervisedStream):
            return super().get_train_dataloader()
        args = self.args
        loader = DataLoader(
            self.train_dataset.for_process(self.accelerator.process_index, self.accelerator.num_processes),
            batch_size=self._train_batch_size,
            collate_fn=self.data_collator,
            num_workers=args.dataloader_num_workers,
            pin_memory=args.dataloader_pin_memory,
            persistent_workers=args.dataloader_persistent_workers,
            prefetch_factor=args.dataloader_prefetch_factor,
        )
        return prepare_data_loader(
            loader,
            self.accelerator.device,
            num_processes=1,
            process_index=0,
            dispatch_batches=False,
            non_blocking=args.dataloader_pin_memory,
        )

    def _prepare_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """On the training device: the items' uint8 images normalised with the training set's mean and std (items
        travel from the data workers as bytes, a quarter of float32's)."""
        inputs = super()._prepare_inputs(inputs)
        if self.train_dataset is None:
            return inputs
        return prepared_batch(
            inputs, self.train_dataset.image_mean, self.train_dataset.image_std, self.args.channels_last
        )

    # The step -------------------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.teacher is not None:
            self.teacher.to(inputs["pixel_values"].device)
        step = self.state.global_step
        # accelerate puts autocast around the prepared model's forward alone; teacher passes need it too.
        with self.accelerator.autocast():
            if self.schedule.in_burn_in(step):
                loss = (self.framework.burn_in_step or supervised_step)(self, model, inputs)
            else:
                loss = self.framework.step(self, model, inputs)
                if self.framework.unlabeled:  # a supervised run has no unsupervised term to weigh
                    self.record(unsup_weight=self.unsup_weight)
        if not torch.isfinite(loss):
            terms = {name: float(values[-1]) for name, values in self._metrics["train"].items() if values}
            raise FloatingPointError(
                f"Non-finite loss ({loss.item()}) at step {step}; last terms {terms}. "
                "Lower the learning rate, or check the inputs for NaN/Inf."
            )
        self.record(loss=loss)
        return (loss, None) if return_outputs else loss

    @property
    def unsup_weight(self) -> float:
        """beta at this step: 0 during burn-in, then rising linearly to `args.unsup_weight` over the ramp-up."""
        return self.schedule.weight(self.state.global_step)

    def supervised_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.args.ohem:
            return ohem_cross_entropy(
                logits,
                labels,
                threshold=self.args.ohem_threshold,
                min_kept=self.args.ohem_min_kept * labels.shape[0],
                ignore_index=self.ignore_index,
            )
        return F.cross_entropy(logits.float(), labels, ignore_index=self.ignore_index)

    def unsupervised_loss(self, *pairs: PseudoLabelPair) -> list[torch.Tensor]:
        """The `args.unsup_loss` term of each pair, on its valid (non-padding) pixels, with the statistics of the
        sets it trained logged."""
        outputs = self.args.unsupervised_loss.compute(pairs, self.args.loss_options)
        burn_in = self.schedule.burn_in_steps
        settled = self.state.global_step >= burn_in + (self.state.max_steps - burn_in) // 2
        for output, pair in zip(outputs, pairs):
            self.record(**pseudo_label_statistics(output, pair.diagnostic_labels, self.ignore_index))
            if settled:  # the second half of the semi-supervised phase, as compare.py's statistics
                counts = pseudo_label_class_counts(output, pair.diagnostic_labels, self.ignore_index)
                self._class_counts = counts if self._class_counts is None else self._class_counts + counts
        return [output.loss for output in outputs]

    def pseudo_labels_by_class(self) -> dict[str, dict[str, float]] | None:
        """Which classes the pseudo-labels of the second half of the semi-supervised phase got right, where the
        unlabeled images' own labels are known: per class, its share of those pixels, the share whose pseudo-label
        was right and the share whose truth lay outside the trained set (`fpl_hf.statistics.pseudo_labels_by_class`),
        over every process; None where nothing was counted. Every process must call it (the counts are summed
        across processes); counts start anew when a run resumes."""
        counts = self._class_counts
        if counts is None:
            counts = torch.zeros(3, self.num_labels, device=self.args.device)
        counts = self.accelerator.reduce(counts, reduction="sum")
        if not counts[0].any():
            return None
        return pseudo_labels_by_class(counts, [self.model.config.id2label[index] for index in range(self.num_labels)])

    def record(self, **values: Any) -> None:
        """Keeps each value for the next log, a tensor as it is: reading it now would make a GPU step wait."""
        mode = "train" if self.model.training else "eval"
        for name, value in values.items():
            self._metrics[mode][name].append(value.detach() if torch.is_tensor(value) else float(value))

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Trainer's log, with the mean of each recorded value since the last one (NaN, a statistic that had nothing
        to count at a step, left out)."""
        mode = "train" if self.model.training else "eval"
        prefix = "" if mode == "train" else "eval_"
        averaged = {}
        for name, values in self._metrics[mode].items():
            numbers = [number for number in map(float, values) if not math.isnan(number)]
            if numbers:
                averaged[f"{prefix}{name}"] = sum(numbers) / len(numbers)
        logs = {**logs, **averaged}
        self._metrics[mode].clear()
        super().log(logs, start_time)

    # Evaluation -----------------------------------------------------------------------------------------
    def _evaluated_network(self, model: nn.Module) -> SegmentationNetwork:
        """The network evaluation runs (CPS: branch 1), predicting at the input size."""
        return evaluated_network(self.accelerator.unwrap_model(model))

    def _inference_model(self, model: nn.Module) -> nn.Module:
        """The model that is saved and exported: the user's own class."""
        return exported(self._evaluated_network(model))

    # Saving ---------------------------------------------------------------------------------------------
    def run_facts(self) -> dict[str, Any]:
        """What this run does, as its summary and card say it: framework, loss, images, steps of each phase."""
        semi_supervised = self.framework.unlabeled
        steps = self.state.max_steps or self.args.max_steps
        data, unlabeled = self.train_dataset, getattr(self.train_dataset, "unlabeled", None)
        burn_in = min(self.args.burn_in_steps, steps) if semi_supervised else 0
        return {
            "framework": self.args.framework,
            "unsup_loss": self.args.unsup_loss if semi_supervised else None,
            "labeled_images": len(data.labeled) if data is not None else 0,
            "unlabeled_images": len(unlabeled) if semi_supervised and isinstance(unlabeled, Dataset) else None,
            "unlabeled_pool": ("streamed" if isinstance(data, SemiSupervisedStream) else "map-style")
            if semi_supervised
            else None,
            "steps": steps,
            "burn_in_steps": burn_in,
            "semi_supervised_steps": steps - burn_in if semi_supervised else 0,
        }

    def create_model_card(self, output_dir: str | None = None, **kwargs: Any) -> None:
        """Writes the card of this run into `output_dir` (default: `args.output_dir`); `kwargs` are ignored."""
        if not self.is_world_process_zero():
            return
        write_model_card(
            output_dir or self.args.output_dir,
            args=self.args,
            model_config=self._inference_model(self.model).config,
            info=self.model_card_info,
            facts=self.run_facts(),
            metrics=self.last_metrics,
            best_metrics=self.best_metrics,
            repo_id=getattr(self, "hub_model_id", None),
            log_history=self.state.log_history,
        )


__all__ = ["FPLTrainer"]
