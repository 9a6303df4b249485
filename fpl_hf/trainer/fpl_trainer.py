"""`FPLTrainer`: transformers' Trainer running one semi-supervised framework step per `compute_loss`."""

from __future__ import annotations

import copy
import os
import shutil
from collections import defaultdict
from typing import Any, Optional

import torch
import torch.nn.functional as F
from accelerate.data_loader import prepare_data_loader
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader
from transformers import Trainer
from transformers.trainer_pt_utils import get_parameter_names
from transformers.utils import logging

from ..data import IGNORE_INDEX, SemiSupervisedStream, semi_supervised_collate
from ..hub import ModelCardInfo, explained_hub_errors, require_token, write_model_card
from ..losses import PseudoLabelLossOutput, fuzzy_positive_assignment, k_shares, ohem_cross_entropy
from ..metrics import ConfusionMatrix
from .callbacks import DatasetEpochCallback, EMATeacherCallback
from .fpl_config import FPLConfig
from ..modeling.transformers_segmenter import PERTURBABLE_FAMILIES, as_segmenter, exported
from .frameworks import FRAMEWORKS, BranchPair, PseudoLabelPair, reinitialized_head_copy
from .unsupervised_losses import UNSUPERVISED_LOSSES

logger = logging.get_logger(__name__)

TEACHER_FILE = "teacher.safetensors"
BRANCH_2_FILE = "branch_2.safetensors"


class FPLTrainer(Trainer):
    """Semi-supervised segmentation Trainer; `args.framework` picks the step (and the networks it keeps),
    `args.unsup_loss` the pseudo-label loss.

    Args:
        model: a `DeepLabV3PlusForSemanticSegmentation` (for CPS it becomes branch 1 of a `BranchPair`).
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
        model_card_info: Optional[ModelCardInfo] = None,
        branch_2: Optional[nn.Module] = None,
        **kwargs: Any,
    ):
        if not isinstance(args, FPLConfig):
            raise TypeError(f"`args` must be an FPLConfig, got {type(args).__name__}.")
        self.framework = args.framework_declaration
        model = as_segmenter(model)
        self.num_labels = model.config.num_labels
        self.ignore_index = IGNORE_INDEX  # the data's, whatever name a model config gives its own
        if self.framework.perturbs_features and not getattr(model, "supports_feature_perturbation", True):
            raise ValueError(
                f"Framework {args.framework!r} perturbs encoder features, which fpl_hf reads for {PERTURBABLE_FAMILIES}; "
                f"{model.config.model_type!r} is not one of them. Train it with framework 'cps' or 'mean_teacher'."
            )
        if isinstance(train_dataset, SemiSupervisedStream) and args.max_steps <= 0:
            raise ValueError("The unlabeled pool is streamed and has no length: set `max_steps`, the training length.")
        if self.framework.second_branch:
            second = as_segmenter(branch_2) if branch_2 is not None else reinitialized_head_copy(model, args.seed + 1)
            model = BranchPair(model, second)
        elif branch_2 is not None:
            raise ValueError(f"`branch_2` is a second network to train; framework {args.framework!r} trains one.")
        self._confusion = ConfusionMatrix(self.num_labels, self.ignore_index)
        kwargs.setdefault("data_collator", semi_supervised_collate)
        kwargs.setdefault("compute_metrics", self._stream_metrics)
        kwargs.setdefault("preprocess_logits_for_metrics", lambda logits, labels: logits.argmax(1))
        super().__init__(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset, **kwargs)
        if hasattr(train_dataset, "set_epoch"):
            self.add_callback(DatasetEpochCallback(train_dataset))
        self.teacher = None
        if self.framework.ema_decay is not None:
            self.teacher = copy.deepcopy(model).eval().requires_grad_(False)
            self.add_callback(EMATeacherCallback(self.teacher, args.ema_decay, args.burn_in_steps))
        self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
        self.model_card_info = model_card_info or ModelCardInfo()
        self.last_metrics: Optional[dict[str, float]] = None
        self.best_metrics: Optional[dict[str, float]] = None

    def get_train_dataloader(self) -> DataLoader:
        """Trainer's loader; a stream gives each process its own part of the pool (`SemiSupervisedStream.for_process`),
        which accelerate must not split again, so the loader is prepared as one process's."""
        if not isinstance(self.train_dataset, SemiSupervisedStream):
            return super().get_train_dataloader()
        args = self.args
        loader = DataLoader(
            self.train_dataset.for_process(self.accelerator.process_index, self.accelerator.num_processes),
            batch_size=self._train_batch_size, collate_fn=self.data_collator, num_workers=args.dataloader_num_workers,
            pin_memory=args.dataloader_pin_memory, persistent_workers=args.dataloader_persistent_workers,
            prefetch_factor=args.dataloader_prefetch_factor,
        )
        return prepare_data_loader(loader, self.accelerator.device, num_processes=1, process_index=0,
                                   dispatch_batches=False, non_blocking=args.dataloader_pin_memory)

    # The step -------------------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.teacher is not None:
            self.teacher.to(inputs["pixel_values"].device)
        # accelerate puts autocast around the prepared model's forward alone; teacher passes need it too.
        with self.accelerator.autocast():
            if self.state.global_step < self.args.burn_in_steps:
                loss = FRAMEWORKS["supervised"].step(self, model, inputs)
            else:
                loss = self.framework.step(self, model, inputs)
                self.record(unsup_weight=self.unsup_weight)
        if not torch.isfinite(loss):
            terms = {name: values[-1] for name, values in self._metrics["train"].items() if values}
            raise FloatingPointError(
                f"Non-finite loss ({loss.item()}) at step {self.state.global_step}; last terms {terms}. "
                "Lower the learning rate, or check the inputs for NaN/Inf."
            )
        self.record(loss=loss)
        return (loss, None) if return_outputs else loss

    @property
    def unsup_weight(self) -> float:
        """beta at this step: 0 during burn-in, then rising linearly to `args.unsup_weight` over the ramp-up."""
        args = self.args
        steps_after_burn_in = self.state.global_step - args.burn_in_steps + 1
        if steps_after_burn_in <= 0:
            return 0.0
        if steps_after_burn_in >= args.unsup_rampup_steps:
            return args.unsup_weight
        return args.unsup_weight * steps_after_burn_in / args.unsup_rampup_steps

    def supervised_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.args.ohem:
            return ohem_cross_entropy(
                logits, labels, threshold=self.args.ohem_threshold, min_kept=self.args.ohem_min_kept * labels.shape[0],
                ignore_index=self.ignore_index,
            )
        return F.cross_entropy(logits.float(), labels, ignore_index=self.ignore_index)

    def unsupervised_loss(self, *pairs: PseudoLabelPair) -> list[torch.Tensor]:
        """The `args.unsup_loss` term of each (student, teacher, valid, diagnostic labels) pair, on its valid
        (non-padding) pixels, with the pseudo-label statistics logged."""
        outputs = UNSUPERVISED_LOSSES[self.args.unsup_loss](pairs, self.args)
        with torch.no_grad():
            for output, (_, teacher, valid, diagnostic_labels) in zip(outputs, pairs):
                self._record_pseudo_label_statistics(output, teacher, valid, diagnostic_labels)
        return [output.loss for output in outputs]

    def _record_pseudo_label_statistics(
        self, output: PseudoLabelLossOutput, teacher: torch.Tensor, valid: torch.Tensor, diagnostic_labels: torch.Tensor
    ) -> None:
        self.record(**k_shares(output.k, valid), weight=output.weight[valid].float().mean())
        known = valid & (diagnostic_labels != self.ignore_index)
        if not known.any():
            return
        # Cases of the paper's section 3.4, against the fuzzy set FPA gives for this teacher, whatever the loss;
        # case 1 (pseudo-label right) is the pseudo-label accuracy.
        fuzzy, _ = fuzzy_positive_assignment(
            torch.softmax(teacher.float(), 1), self.args.threshold, semantics=self.args.semantics, kmax=self.args.kmax
        )
        truth = diagnostic_labels.clamp(max=teacher.shape[1] - 1)
        right = teacher.argmax(1) == truth
        in_set = fuzzy.gather(1, truth.unsqueeze(1)).squeeze(1)
        total = known.sum()
        self.record(
            pseudo_label_accuracy=(right & known).sum() / total,
            case_wrong_in_set=(~right & in_set & known).sum() / total,
            case_outside_set=(~in_set & known).sum() / total,
        )

    def record(self, **values: Any) -> None:
        mode = "train" if self.model.training else "eval"
        for name, value in values.items():
            self._metrics[mode][name].append(float(value.detach()) if torch.is_tensor(value) else float(value))

    def log(self, logs: dict[str, float], start_time: Optional[float] = None) -> None:
        mode = "train" if self.model.training else "eval"
        prefix = "" if mode == "train" else "eval_"
        averaged = {f"{prefix}{name}": sum(values) / len(values) for name, values in self._metrics[mode].items() if values}
        logs = {**logs, **averaged}
        self._metrics[mode].clear()
        super().log(logs, start_time)

    # Optimizer ------------------------------------------------------------------------------------------
    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        """Weight decay on weights only: never on BatchNorm, GroupNorm, LayerNorm parameters or biases."""
        norms = [nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm]
        return [name for name in get_parameter_names(model, norms) if not name.endswith("bias")]

    def create_optimizer(self, model: Optional[nn.Module] = None) -> torch.optim.Optimizer:
        """Trainer's optimizer; with `encoder_lr_ratio` != 1 each group is split so that the encoder's parameters
        (each network's `encoder_module`) learn at that fraction of the learning rate."""
        fresh = self.optimizer is None
        optimizer = super().create_optimizer(model)
        ratio = self.args.encoder_lr_ratio
        if fresh and ratio != 1.0:
            trained = model if model is not None else self.model
            networks = [m for m in trained.modules() if getattr(m, "encoder_module", None)]
            encoder = {id(p) for m in networks for p in m.get_submodule(m.encoder_module).parameters()}
            if not encoder:
                raise ValueError("`encoder_lr_ratio` needs the model's encoder, which fpl_hf does not know for "
                                 f"{type(self._inference_model(self.model)).__name__}; leave it at 1.")
            for group in list(optimizer.param_groups):
                slower = [p for p in group["params"] if id(p) in encoder]
                group["params"] = [p for p in group["params"] if id(p) not in encoder]
                if slower:
                    optimizer.add_param_group({**group, "params": slower, "lr": group["lr"] * ratio})
        return optimizer

    # Evaluation -----------------------------------------------------------------------------------------
    def _evaluated_network(self, model: nn.Module) -> nn.Module:
        """The network evaluation runs (CPS: branch 1), predicting at the input size."""
        model = self.accelerator.unwrap_model(model)
        return model.branch_1 if isinstance(model, BranchPair) else model

    def _inference_model(self, model: nn.Module) -> nn.Module:
        """The model that is saved and exported: the user's own class."""
        return exported(self._evaluated_network(model))

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        """`Trainer.evaluate`; when it fails, the trained weights are saved to `output_dir` before the error goes on."""
        try:
            return super().evaluate(*args, **kwargs)
        except Exception:
            if self.state.global_step > 0:
                logger.warning(f"Evaluation failed; the model of step {self.state.global_step} is saved in "
                               f"{self.args.output_dir}.")
                self.save_model()
            raise

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        with torch.no_grad():
            logits, labels = self.args.evaluation_protocol.padded_batch(
                self._evaluated_network(model), inputs["pixel_values"], inputs["labels"], inputs.get("image_size"),
                self.ignore_index,
            )
            loss = self.supervised_loss(logits, labels)
        return loss, logits, labels

    def _stream_metrics(self, eval_pred, compute_result: bool = False) -> dict[str, float]:
        predictions, labels = eval_pred.predictions, eval_pred.label_ids
        self._confusion.update(predictions, labels)
        if not compute_result:
            return {}
        result = self._confusion.compute()
        self._confusion = ConfusionMatrix(self.num_labels, self.ignore_index)
        names = getattr(self._inference_model(self.model).config, "id2label", {})
        metrics = {"mean_iou": float(result["mean_iou"]), "overall_accuracy": float(result["overall_accuracy"])}
        for index, iou in enumerate(result["per_category_iou"]):
            metrics[f"iou_{names.get(index, index)}"] = float(iou)
        self.last_metrics = {**metrics, "step": self.state.global_step}
        if self.best_metrics is None or not metrics["mean_iou"] <= self.best_metrics["mean_iou"]:
            self.best_metrics = self.last_metrics
        return metrics

    # Saving and the Hub ---------------------------------------------------------------------------------
    def _companion_networks(self) -> dict[str, nn.Module]:
        """The networks a checkpoint holds beside the exported model, by file name."""
        model = self.accelerator.unwrap_model(self.model)
        if isinstance(model, BranchPair):
            return {BRANCH_2_FILE: model.branch_2}
        return {TEACHER_FILE: self.teacher} if self.teacher is not None else {}

    def save_model(self, output_dir: Optional[str] = None, _internal_call: bool = False) -> None:
        """Every save is a model `from_pretrained` loads (CPS: branch 1), with its processor, code and card;
        checkpoints also hold the other networks (CPS branch 2, the mean teacher) to resume from."""
        output_dir = output_dir or self.args.output_dir
        if self.args.should_save:
            self._inference_model(self.model).save_pretrained(output_dir)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(output_dir)
            if _internal_call:
                for filename, network in self._companion_networks().items():
                    _save_atomically(network.state_dict(), os.path.join(output_dir, filename))
            self.create_model_card(output_dir=output_dir)
        if self.args.push_to_hub and not _internal_call:
            self.push_to_hub(commit_message="Model save", revision=self.args.hub_revision)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Optional[nn.Module] = None) -> None:
        exported = self._inference_model(model if model is not None else self.model)
        networks = {"model.safetensors": exported, **self._companion_networks()}
        for filename, network in networks.items():
            path = os.path.join(resume_from_checkpoint, filename)
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"{resume_from_checkpoint} has no {filename}: it is not a checkpoint of a {self.args.framework} run."
                )
            if network is exported:  # saved by `save_pretrained`, whose key layout its class's loader knows
                network.load_state_dict(type(exported).from_pretrained(resume_from_checkpoint).state_dict())
            else:
                network.load_state_dict(load_file(path))

    def _load_best_model(self) -> None:
        self._load_from_checkpoint(self.state.best_model_checkpoint)

    def create_model_card(self, output_dir: Optional[str] = None, **kwargs: Any) -> None:
        """Writes the card of this run into `output_dir` (default: `args.output_dir`); `kwargs` are ignored."""
        if not self.is_world_process_zero():
            return
        data = self.train_dataset
        write_model_card(
            output_dir or self.args.output_dir,
            args=self.args,
            model_config=self._inference_model(self.model).config,
            info=self.model_card_info,
            num_labeled=len(data.labeled) if hasattr(data, "labeled") else 0,
            num_unlabeled=pool_size(getattr(data, "unlabeled", None)),
            metrics=self.last_metrics,
            best_metrics=self.best_metrics,
            repo_id=getattr(self, "hub_model_id", None),
        )

    def init_hf_repo(self, token: Optional[str] = None, private: Optional[bool] = None) -> None:
        token = require_token(token or self.args.hub_token)
        with explained_hub_errors(f"create the Hub repo {self.args.hub_model_id or self.args.output_dir}"):
            super().init_hf_repo(token=token, private=private)

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        self._warn_about_failed_pushes()
        # Trainer copies only config and weights to the root it uploads; the card and the code files (for
        # trust_remote_code users) must go with them.
        if self.is_world_process_zero():
            for name in os.listdir(checkpoint_folder):
                if name.endswith(".py") or name == "README.md":
                    shutil.copy(os.path.join(checkpoint_folder, name), os.path.join(self.args.output_dir, name))
        super()._push_from_checkpoint(checkpoint_folder)

    def _warn_about_failed_pushes(self) -> None:
        # Trainer pushes checkpoints in the background and never looks at the outcome.
        pending = getattr(self, "push_in_progress", None)
        for job in pending.jobs if pending is not None else []:
            if job.done() and not job.cancelled() and job.exception() is not None:
                logger.warning(
                    f"A background push to {self.hub_model_id} failed ({job.exception()}); training goes on, the next "
                    f"save pushes again, and everything is kept in {self.args.output_dir}."
                )

    def push_to_hub(self, commit_message: Optional[str] = "End of training", blocking: bool = True, **kwargs: Any):
        self._finish_current_push()
        self._warn_about_failed_pushes()
        with explained_hub_errors(f"push {self.args.output_dir} to the Hub", self.args.output_dir):
            return super().push_to_hub(commit_message=commit_message, blocking=blocking, **kwargs)


def pool_size(unlabeled: Any) -> int | str:
    """How many unlabeled images, in words where the pool is streamed and its size unknown."""
    if unlabeled is None:
        return 0
    return len(unlabeled) if hasattr(unlabeled, "__len__") else "a streamed pool of"


def _save_atomically(state_dict: dict[str, torch.Tensor], path: str) -> None:
    temporary = f"{path}.tmp"
    save_file({name: tensor.contiguous() for name, tensor in state_dict.items()}, temporary)
    os.replace(temporary, path)


__all__ = ["BranchPair", "FPLTrainer", "reinitialized_head_copy"]

