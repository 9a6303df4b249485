"""A training set whose unlabeled pool is streamed: a `datasets.IterableDataset`, never held in memory."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from typing import Any

import datasets
import torch
from datasets import Dataset, Image
from datasets.distributed import split_dataset_by_node

from .samples import Sample, checked_sample, read_image, sample_name
from .splits import DIAGNOSTIC_LABEL
from .training_items import TrainingItems, seed_of, seeded


class SemiSupervisedStream(TrainingItems, torch.utils.data.IterableDataset):
    """Endless training items (`TrainingItems`) from a map-style labeled part and a streamed unlabeled pool.

    - The pool is read through a shuffle buffer of `shuffle_buffer_size` examples (its shards' order shuffled too),
      reshuffled at each pass over it.
    - `for_process(rank, world_size)` keeps one training process's part of the pool (`split_dataset_by_node`),
      and DataLoader workers divide that part by shards, as `datasets` does: within a pass, no two processes or
      workers read the same example. The labeled part goes round in a new seeded order at each pass, dealt out
      across processes and workers the same way.
    - Item k of a worker depends only on (seed, process, worker, k): a resumed run, which regenerates and skips the
      batches already trained on (the Trainer's default), continues the stream exactly where it stopped.

    The stream has no length: training runs for `max_steps`, whatever the size of the pool.
    """

    def __init__(
        self, labeled: Dataset, unlabeled: datasets.IterableDataset, *, shuffle_buffer_size: int = 1000, **options: Any
    ):
        super().__init__(labeled, **options)
        if not isinstance(unlabeled, datasets.IterableDataset):
            raise TypeError(
                f"The streamed unlabeled pool must be a datasets.IterableDataset, got {type(unlabeled).__name__}; "
                "a map-style pool trains with `SemiSupervisedDataset` (or stream it: "
                "`pool.to_iterable_dataset(num_shards=...)`)."
            )
        if not self.num_unlabeled:
            raise ValueError("This framework uses no unlabeled images: train it with `SemiSupervisedDataset`.")
        if shuffle_buffer_size < 1:
            raise ValueError(f"`shuffle_buffer_size` must be >= 1, got {shuffle_buffer_size}.")
        for column, feature in (unlabeled.features or {}).items():
            if column in ("image", DIAGNOSTIC_LABEL) and isinstance(feature, Image):
                # Decoded here, where a corrupt file can be named with its place in the stream.
                unlabeled = unlabeled.cast_column(column, Image(decode=False))
        self.unlabeled = unlabeled.shuffle(seed=self.seed, buffer_size=shuffle_buffer_size)
        self.rank, self.world_size = 0, 1
        self._labeled_order: tuple[int, torch.Tensor] = (-1, torch.empty(0))

    def for_process(self, rank: int, world_size: int) -> SemiSupervisedStream:
        """The stream of process `rank` of `world_size`: its own part of the pool."""
        part = copy.copy(self)
        part.unlabeled = split_dataset_by_node(self.unlabeled, rank=rank, world_size=world_size)
        part.rank, part.world_size = rank, world_size
        return part

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        worker = torch.utils.data.get_worker_info()
        worker_id, num_workers = (worker.id, worker.num_workers) if worker else (0, 1)
        if self.unlabeled.num_shards < num_workers:
            raise ValueError(
                f"The unlabeled pool of process {self.rank} has {self.unlabeled.num_shards} shard(s) for {num_workers} "
                "data-loader workers, and workers divide shards: use at most that many workers, or give the pool "
                "more shards (`pool.to_iterable_dataset(num_shards=...)`, more files, or `pool.reshard()`)."
            )
        part, parts = self.rank * num_workers + worker_id, self.world_size * num_workers
        examples = self._unlabeled_examples(f"process {self.rank}, worker {worker_id}")
        for position in itertools.count():
            with seeded(self.seed, part, parts, position):
                labeled = self._labeled_sample(position * parts + part)
                item = self.make_item(labeled, lambda group, offset: next(examples))
            yield item

    def _labeled_sample(self, slot: int) -> Sample:
        labeled_pass, index = divmod(slot, len(self.labeled))
        if self._labeled_order[0] != labeled_pass:
            generator = torch.Generator().manual_seed(seed_of(self.seed, labeled_pass, -1))
            self._labeled_order = (labeled_pass, torch.randperm(len(self.labeled), generator=generator))
        return self.labeled_sample(int(self._labeled_order[1][index]))

    def _unlabeled_examples(self, reader: str) -> Iterator[Sample]:
        """This reader's examples, checked, pass after pass."""
        for pool_pass in itertools.count():
            self.unlabeled.set_epoch(pool_pass)
            count = 0
            for count, example in enumerate(self.unlabeled, start=1):
                if "image" not in example:
                    raise ValueError(
                        f"Unlabeled example {count - 1} of pass {pool_pass} ({reader}) has no `image` "
                        f"column, only {sorted(example)}; rename its image column."
                    )
                diagnostic = example.get(DIAGNOSTIC_LABEL)
                where = sample_name(
                    f"unlabeled example {count - 1} of pass {pool_pass} ({reader})", example["image"], diagnostic
                )
                image = read_image(example["image"], "image", where)
                label = read_image(diagnostic, DIAGNOSTIC_LABEL, where) if diagnostic is not None else None
                yield checked_sample(image, label, where, self.num_labels, self.palette)
            if count == 0:
                raise ValueError(
                    f"The unlabeled pool gave {reader} no images: it is empty, or has fewer shards "
                    "than processes x workers."
                )


__all__ = ["SemiSupervisedStream"]
