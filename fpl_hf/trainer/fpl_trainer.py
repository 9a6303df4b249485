"""`FPLTrainer`: transformers' Trainer running one semi-supervised framework step per `compute_loss`."""

from __future__ import annotations

import copy
import os
import shutil
from collections import defaultdict
from typing import Any, Optional

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import Trainer
from transformers.trainer_pt_utils import get_parameter_names
from transformers.utils import logging

from ..data import pad_collate
from ..hub import ModelCardInfo, explained_hub_errors, require_token, write_model_card
from ..losses import (
    fuzzy_positive_assignment,
    fuzzy_positive_loss,
    k_shares,
    ohem_cross_entropy,
    pseudo_label_cross_entropy,
)
from ..metrics import ConfusionMatrix
from .callbacks import DatasetEpochCallback, EMATeacherCallback
from .fpl_config import FPLConfig
from .frameworks import STEPS, supervised
from .frameworks.common import PseudoLabelPair

logger = logging.get_logger(__name__)

TEACHER_FILE = "teacher.safetensors"
BRANCH_2_FILE = "branch_2.safetensors"


class BranchPair(nn.Module):
    """CPS's two networks of one architecture; a forward returns both logits. Branch 1 is the exported model."""

    def __init__(self, branch_1: nn.Module, branch_2: nn.Module):
        super().__init__()
        self.branch_1, self.branch_2 = branch_1, branch_2
        self.config = branch_1.config

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.branch_1(pixel_values=pixel_values).logits, self.branch_2(pixel_values=pixel_values).logits


def reinitialized_head_copy(model: nn.Module, seed: int) -> nn.Module:
    """A copy of `model` with the same (pretrained) backbone and a differently initialised head, as CPS does."""
    twin = copy.deepcopy(model)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    for name, module in twin.named_modules():
        if not name.startswith("backbone") and module is not twin:
            twin._init_weights(module)
    torch.random.set_rng_state(generator_state)
    return twin


class FPLTrainer(Trainer):
    """Semi-supervised segmentation Trainer; `args.framework` picks the step, `args.unsup_loss` the loss.

    Args:
        model: a `DeepLabV3PlusForSemanticSegmentation` (for CPS it becomes branch 1 of a `BranchPair`).
        args: an `FPLConfig`.
        train_dataset: a `SemiSupervisedDataset` built for the framework (`FPLConfig.train_dataset_options()`).
        eval_dataset: labeled images (`EvaluationDataset`); evaluation streams a confusion matrix.
        model_card_info: what the model card says about the data and the backbone's weights. Every save (each
            checkpoint and the final model) writes the card, with the latest and the best evaluation.
        branch_2: CPS's second network, e.g. another trained model; by default a copy of `model` whose head is
            initialised anew (CPS's two differently initialised branches).
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
        self.num_labels = model.config.num_labels
        self.ignore_index = model.config.semantic_loss_ignore_index
        if branch_2 is not None and args.framework != "cps":
            raise ValueError(f"`branch_2` is CPS's second network; framework {args.framework!r} has none.")
        if args.framework == "cps":
            model = BranchPair(model, branch_2 if branch_2 is not None else reinitialized_head_copy(model, args.seed + 1))
        args.batch_eval_metrics = True
        self._confusion = ConfusionMatrix(self.num_labels, self.ignore_index)
        kwargs.setdefault("data_collator", pad_collate)
        kwargs.setdefault("compute_metrics", self._stream_metrics)
        kwargs.setdefault("preprocess_logits_for_metrics", lambda logits, labels: logits.argmax(1))
        super().__init__(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset, **kwargs)
        if hasattr(train_dataset, "set_epoch"):
            self.add_callback(DatasetEpochCallback(train_dataset))
        self.teacher = None
        if args.framework == "mean_teacher":
            self.teacher = copy.deepcopy(model).eval().requires_grad_(False)
            self.add_callback(EMATeacherCallback(self.teacher, args.ema_decay, args.burn_in_steps))
        self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
        self.model_card_info = model_card_info or ModelCardInfo()
        self.last_metrics: Optional[dict[str, float]] = None
        self.best_metrics: Optional[dict[str, float]] = None

    # The step -------------------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.teacher is not None:
            self.teacher.to(inputs["pixel_values"].device)
        # accelerate puts autocast around the prepared model's forward alone; teacher passes need it too.
        with self.accelerator.autocast():
            if self.state.global_step < self.args.burn_in_steps:
                loss = supervised.step(self, model, inputs)
            else:
                loss = STEPS[self.args.framework](self, model, inputs)
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
        """The pseudo-label loss of `args.unsup_loss` of each (student, teacher, valid, hidden labels) pair, on its
        valid (non-padding) pixels, with the statistics logged.

        With `balance_to_ce` (FPL), every term is rescaled by one detached ratio sum(CE) / sum(FPL) over the pairs,
        as the released code does for CPS's two directions: the values are then the vanilla losses', the
        gradients FPL's.
        """
        args = self.args
        fpl = args.unsup_loss == "fpl"
        losses, vanilla = [], []
        for student, teacher, valid, hidden_labels in pairs:
            if fpl:
                out = fuzzy_positive_loss(
                    student, teacher, args.threshold, weight=args.fpl_weight, semantics=args.semantics, kmax=args.kmax,
                    A=args.concave_a, ignore_mask=~valid,
                )
            else:
                out = pseudo_label_cross_entropy(student, teacher, args.confidence_threshold, ignore_mask=~valid)
            losses.append(out.loss)
            if fpl and args.balance_to_ce:
                vanilla.append(pseudo_label_cross_entropy(student.detach(), teacher, ignore_mask=~valid).loss)
            with torch.no_grad():
                self._record_pseudo_label_statistics(out, teacher, valid, hidden_labels)
        if vanilla:
            ratio = sum(vanilla) / sum(loss.detach() for loss in losses).clamp(min=1e-12)
            losses = [loss * ratio for loss in losses]
        return losses

    def _record_pseudo_label_statistics(self, out, teacher, valid, hidden_labels) -> None:
        self.record(**k_shares(out.k, valid), weight=out.weight[valid].float().mean())
        known = valid & (hidden_labels != self.ignore_index)
        if not known.any():
            return
        # Cases of the paper's section 3.4, against the fuzzy set FPA gives for this teacher (the loss's own set
        # for 'fpl'; computed here for 'ce'); case 1 (pseudo-label right) is the pseudo-label accuracy.
        fuzzy = out.positive_mask
        if self.args.unsup_loss != "fpl":
            fuzzy, _ = fuzzy_positive_assignment(
                torch.softmax(teacher.float(), 1), self.args.threshold, semantics=self.args.semantics, kmax=self.args.kmax
            )
        truth = hidden_labels.clamp(max=teacher.shape[1] - 1)
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

    # Evaluation -----------------------------------------------------------------------------------------
    def _inference_model(self, model: nn.Module) -> nn.Module:
        model = self.accelerator.unwrap_model(model)
        return model.branch_1 if isinstance(model, BranchPair) else model

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
                self._inference_model(model), inputs["pixel_values"], inputs["labels"], inputs.get("image_size"),
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
        networks = {
            "model.safetensors": self._inference_model(model if model is not None else self.model),
            **self._companion_networks(),
        }
        for filename, network in networks.items():
            path = os.path.join(resume_from_checkpoint, filename)
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"{resume_from_checkpoint} has no {filename}: it is not a checkpoint of a {self.args.framework} run."
                )
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
            num_unlabeled=len(data.unlabeled) if getattr(data, "unlabeled", None) is not None else 0,
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


def _save_atomically(state_dict: dict[str, torch.Tensor], path: str) -> None:
    temporary = f"{path}.tmp"
    save_file({name: tensor.contiguous() for name, tensor in state_dict.items()}, temporary)
    os.replace(temporary, path)


__all__ = ["BranchPair", "FPLTrainer", "reinitialized_head_copy"]

