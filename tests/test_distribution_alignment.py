"""Distribution alignment: a class the teacher under-predicts gains probability until its pseudo-labels come near the
labeled pixels' frequency; the trainer aligns what every pseudo-label loss reads."""

import dataclasses

import pytest
import torch
from conftest import make_trainer

from fpl_hf.trainer.distribution_alignment import DistributionAlignment
from fpl_hf.trainer.frameworks import PseudoLabelPair


def teacher_pair(logits: torch.Tensor) -> PseudoLabelPair:
    batch, _, height, width = logits.shape
    valid = torch.ones(batch, height, width, dtype=torch.bool)
    return PseudoLabelPair(torch.zeros_like(logits), logits, valid, torch.full((batch, height, width), 255))


def test_a_class_the_teacher_under_predicts_comes_near_its_labeled_frequency():
    # Class 2 is a close second on the first 6 of 16 rows and never first; the labeled pixels show it on 30%.
    logits = torch.zeros(4, 3, 16, 16)
    logits[:, 0] = 2.0
    logits[:, 2, :6] = 1.9
    labels = torch.zeros(4, 10, 10, dtype=torch.long)
    labels[..., 7:] = 2
    alignment = DistributionAlignment(num_labels=3, ignore_index=255)
    alignment.observe_labels(labels)
    alignment.observe_labels(torch.full((1, 4, 4), 255))  # unknown pixels count for nothing
    assert alignment.labeled_counts.tolist() == pytest.approx([(labels == k).sum().item() for k in range(3)])
    assert (logits.argmax(1) == 2).float().mean() == 0
    for _ in range(5):
        aligned = alignment(teacher_pair(logits)).teacher
    share_of_class_2 = (aligned.argmax(1) == 2).float().mean().item()
    assert share_of_class_2 == 6 / 16  # where it was a close second, and nowhere else
    before, after = logits.softmax(1)[:, 2].mean(), aligned.softmax(1)[:, 2].mean()
    assert abs(after - 0.3) < abs(before - 0.3)


def test_nothing_moves_before_a_labeled_pixel_is_seen_and_an_unseen_class_is_suppressed():
    logits = torch.randn(2, 3, 8, 8)
    alignment = DistributionAlignment(num_labels=3, ignore_index=255)
    assert torch.equal(alignment(teacher_pair(logits)).teacher, logits)
    alignment.observe_labels(torch.tensor([[[0, 1], [0, 1]]]))
    aligned = alignment(teacher_pair(logits)).teacher
    assert (aligned.argmax(1) != 2).all()  # no labeled pixel has shown class 2


def test_the_trainer_aligns_the_teacher_that_the_pseudo_label_loss_reads(scenes, tmp_path, monkeypatch):
    trainer = make_trainer(
        scenes, tmp_path, framework="mean_teacher", max_steps=3, burn_in_steps=1, distribution_alignment=True
    )
    loss, seen = trainer.args.unsupervised_loss, []
    unaligned = []

    def recording(pairs, options):
        seen.extend(pairs)
        return loss.compute(pairs, options)

    original_call = DistributionAlignment.__call__

    def keeping_input(self, pair):
        unaligned.append(pair)
        return original_call(self, pair)

    monkeypatch.setattr(DistributionAlignment, "__call__", keeping_input)
    monkeypatch.setattr(
        type(trainer.args), "unsupervised_loss", property(lambda _: dataclasses.replace(loss, compute=recording))
    )
    trainer.train()
    labeled_pixels = 3 * trainer.args.per_device_train_batch_size * trainer.args.crop_size**2
    assert 0 < trainer.alignment.labeled_counts.sum() <= labeled_pixels
    assert trainer.alignment.teacher_prior.sum().item() == pytest.approx(1.0)
    assert len(seen) == len(unaligned) == 2  # the two semi-supervised steps
    shift = seen[-1].teacher - unaligned[-1].teacher.float()
    assert shift.abs().sum() > 0 and torch.allclose(shift, shift[:1, :, :1, :1].expand_as(shift), atol=1e-5)
