"""Distribution alignment: the teacher's class shares are moved to the labeled pixels' shares, in the trainer."""

import pytest
import torch
from conftest import make_trainer, one_batch

from fpl_hf.losses import fuzzy_positive_loss
from fpl_hf.trainer.alignment import DistributionAlignment
from fpl_hf.trainer.frameworks import PseudoLabelPair


def two_class_logits(probabilities, shape=(2, 4, 4)):
    """Logits (B, 2, H, W) whose pixels all have the class probabilities `probabilities`."""
    return torch.tensor(probabilities).log()[None, :, None, None].expand(shape[0], 2, *shape[1:]).clone()


def aligned_shares(logits, valid):
    weights = valid[:, None].float()
    return (logits.softmax(1) * weights).sum((0, 2, 3)) / weights.sum()


def test_the_teachers_valid_pixels_are_aligned_to_the_labeled_shares():
    alignment = DistributionAlignment(num_labels=2, ignore_index=255)
    labels = torch.tensor([[0, 1, 255, 255]])  # half and half; the ignored pixels count for nothing
    alignment.observe_labels(labels)
    logits = two_class_logits([0.8, 0.2])
    valid = torch.ones(2, 4, 4, dtype=torch.bool)
    valid[:, :, 2:] = False
    logits[:, :, :, 2:] = two_class_logits([0.01, 0.99])[:, :, :, 2:]  # padding the teacher calls class 1
    aligned = alignment(logits, valid)
    torch.testing.assert_close(aligned_shares(aligned, valid), torch.tensor([0.5, 0.5]))
    # The per-pixel shift is the log of (labeled share / predicted share), the same for every pixel.
    torch.testing.assert_close(
        aligned - logits, torch.tensor([0.5 / 0.8, 0.5 / 0.2]).log()[None, :, None, None].expand_as(logits)
    )


def test_the_predicted_shares_are_a_running_mean_and_the_labeled_ones_a_count_of_every_batch():
    alignment = DistributionAlignment(num_labels=2, ignore_index=255, momentum=0.9)
    alignment.observe_labels(torch.tensor([[0, 0, 0, 1]]))
    alignment.observe_labels(torch.tensor([[0, 1, 1, 1]]))  # together: half and half
    valid = torch.ones(2, 4, 4, dtype=torch.bool)
    alignment(two_class_logits([0.8, 0.2]), valid)
    aligned = alignment(two_class_logits([0.6, 0.4]), valid)
    predicted = 0.9 * torch.tensor([0.8, 0.2]) + 0.1 * torch.tensor([0.6, 0.4])
    torch.testing.assert_close(alignment.predicted_shares, predicted)
    expected = torch.tensor([0.6, 0.4]) * 0.5 / predicted
    torch.testing.assert_close(aligned.softmax(1)[0, :, 0, 0], expected / expected.sum())


def test_alignment_before_any_labeled_pixel_is_refused():
    with pytest.raises(RuntimeError, match="observe_labels"):
        DistributionAlignment(2, 255)(two_class_logits([0.5, 0.5]), torch.ones(2, 4, 4, dtype=torch.bool))


def test_the_trainer_counts_each_labeled_batch_and_gives_the_loss_aligned_teachers(scenes, tmp_path):
    trainer = make_trainer(scenes, tmp_path, framework="cps", distribution_alignment=True)
    trainer.model.train()
    batch = one_batch(trainer)
    trainer.compute_loss(trainer.model, batch)
    labels = batch["labels"][batch["labels"] != 255]
    torch.testing.assert_close(trainer.alignment.labeled_counts, torch.bincount(labels, minlength=11).double())

    generator = torch.Generator().manual_seed(0)
    student, teacher = (2 * torch.randn(2, 11, 6, 6, generator=generator) for _ in range(2))
    valid = torch.rand(2, 6, 6, generator=generator) > 0.3
    reference = DistributionAlignment(11, 255)
    reference.labeled_counts = trainer.alignment.labeled_counts.clone()
    reference.predicted_shares = trainer.alignment.predicted_shares.clone()
    (loss,) = trainer.unsupervised_loss(PseudoLabelPair(student, teacher, valid, torch.full((2, 6, 6), 255)))
    torch.testing.assert_close(loss, fuzzy_positive_loss(student, reference(teacher, valid), ignore_mask=~valid).loss)
    assert not torch.isclose(loss, fuzzy_positive_loss(student, teacher, ignore_mask=~valid).loss)


def test_without_the_option_the_trainer_keeps_no_alignment(scenes, tmp_path):
    assert make_trainer(scenes, tmp_path, framework="cps").alignment is None
