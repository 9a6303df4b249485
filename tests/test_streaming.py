"""Streamed unlabeled pools: sharding, determinism, resuming, the unlabeled batch size, and their errors."""

import pytest
import torch
from conftest import make_trainer
from datasets import Dataset, Features, Image, IterableDataset
from PIL import Image as PILImage

from fpl_hf.data import SemiSupervisedStream, training_dataset
from fpl_hf.trainer import FPLConfig

OPTIONS = dict(num_labels=2, crop_size=8, image_mean=[0] * 3, image_std=[1] * 3, scale_range=(1.0, 1.0))


def numbered_pool(count: int, num_shards: int) -> IterableDataset:
    """`count` uniform 8x8 images whose red and green values spell their number, in `num_shards` shards; never
    materialised (a generator per shard)."""

    def images(shards):
        for shard in shards:
            for number in range(shard, count, num_shards):
                yield {"image": PILImage.new("RGB", (8, 8), (number % 256, number // 256, 0))}

    return IterableDataset.from_generator(
        images, gen_kwargs={"shards": list(range(num_shards))}, features=Features({"image": Image()})
    )


def labeled_images(count: int = 3) -> Dataset:
    return Dataset.from_dict(
        {"image": [PILImage.new("RGB", (8, 8), "white")] * count, "label": [PILImage.new("L", (8, 8))] * count}
    )


def numbers(item) -> list[int]:
    pixels = item["unlabeled_pixel_values"][..., :2, 0, 0].long().reshape(-1, 2)
    return (pixels[:, 0] + 256 * pixels[:, 1]).tolist()


def read(stream, items: int, num_workers: int = 0) -> list[int]:
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=num_workers)
    seen = []
    for _, item in zip(range(items), loader):
        seen += numbers(item)
    return seen


def test_processes_and_workers_read_disjoint_parts_of_one_pass():
    stream = SemiSupervisedStream(labeled_images(), numbered_pool(48, num_shards=8), shuffle_buffer_size=4, **OPTIONS)
    # 2 processes x 2 workers: each of the 4 readers holds 2 shards = 12 images of the pass.
    parts = [read(stream.for_process(rank, 2), items=24, num_workers=2) for rank in range(2)]
    assert all(len(part) == len(set(part)) == 24 for part in parts)
    assert not set(parts[0]) & set(parts[1])
    assert sorted(parts[0] + parts[1]) == list(range(48))


def test_a_pass_is_shuffled_and_the_next_pass_in_another_order():
    stream = SemiSupervisedStream(labeled_images(), numbered_pool(32, num_shards=2), shuffle_buffer_size=8, **OPTIONS)
    first, second = read(stream, 32)[:32], read(stream, 64)[32:]
    assert sorted(first) == sorted(second) == list(range(32))
    assert first != sorted(first) and first != second


def test_the_stream_is_deterministic_and_leaves_the_global_rng_alone():
    stream = SemiSupervisedStream(
        labeled_images(),
        numbered_pool(16, num_shards=2),
        num_unlabeled=2,
        num_strong_views=1,
        num_cutmix_masks=1,
        unlabeled_groups=2,
        **OPTIONS,
    )
    state = torch.random.get_rng_state()
    runs = [list(zip(range(5), stream)) for _ in range(2)]
    assert torch.equal(torch.random.get_rng_state(), state)
    for (_, a), (_, b) in zip(*runs):
        assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    item = runs[0][0][1]
    assert item["unlabeled_pixel_values"].shape == (2, 2, 3, 8, 8)  # 2 groups of an image and its mixing partner
    assert item["unlabeled_strong_pixel_values"].shape == (2, 2, 1, 3, 8, 8) and item["cutmix_masks"].shape == (
        2,
        1,
        8,
        8,
    )
    assert len(set(numbers(item))) == 4


def test_a_resumed_streamed_run_ends_with_the_weights_of_an_uninterrupted_one(scenes, tmp_path):
    labeled, unlabeled, validation = scenes
    streamed = (labeled, unlabeled.to_iterable_dataset(num_shards=4), validation)
    options = dict(framework="cps", max_steps=4, per_device_unlabeled_batch_size=4)
    full = make_trainer(streamed, tmp_path / "full", **options)
    full.train()
    make_trainer(streamed, tmp_path / "cut", save_strategy="steps", save_steps=2, **options).train()
    resumed = make_trainer(streamed, tmp_path / "cut", **options)
    resumed.train(resume_from_checkpoint=str(tmp_path / "cut" / "run" / "checkpoint-2"))
    state = resumed.model.state_dict()
    for name, value in full.model.state_dict().items():
        torch.testing.assert_close(state[name], value, msg=name)


def test_each_step_takes_the_unlabeled_batch_size(scenes, tmp_path):
    labeled, unlabeled, validation = scenes
    for pool in (unlabeled, unlabeled.to_iterable_dataset(num_shards=2)):  # map-style and streamed alike
        trainer = make_trainer(
            (labeled, pool, validation),
            tmp_path,
            framework="cps",
            per_device_train_batch_size=2,
            per_device_unlabeled_batch_size=6,
        )
        batch = next(iter(trainer.get_train_dataloader()))
        assert batch["pixel_values"].shape[0] == 2
        assert batch["unlabeled_pixel_values"].shape[:2] == (6, 2) and batch["cutmix_masks"].shape[0] == 6


def test_a_map_style_pool_gives_each_item_the_next_unlabeled_images(scenes):
    labeled, unlabeled, _ = scenes
    data = training_dataset(
        labeled, unlabeled, num_labels=11, crop_size=16, image_mean=[0.5] * 3, image_std=[0.5] * 3, unlabeled_groups=3
    )
    assert len(data) == max(len(labeled), -(-len(unlabeled) // 3))
    assert data[0]["unlabeled_pixel_values"].shape == (3, 1, 3, 16, 16)


def test_streaming_mistakes_are_explained(scenes, tmp_path):
    labeled, unlabeled, validation = scenes
    with pytest.raises(ValueError, match="multiple of `per_device_train_batch_size`"):
        FPLConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, per_device_unlabeled_batch_size=6)
    with pytest.raises(ValueError, match="set `max_steps`"):
        make_trainer((labeled, unlabeled.to_iterable_dataset(), validation), tmp_path, max_steps=-1, num_train_epochs=1)
    with pytest.raises(TypeError, match="to_iterable_dataset"):
        SemiSupervisedStream(labeled, unlabeled, **OPTIONS)
    stream = SemiSupervisedStream(labeled_images(), numbered_pool(8, num_shards=1), **OPTIONS)
    with pytest.raises(Exception, match="1 shard\\(s\\) for 2 data-loader workers"):
        read(stream, 1, num_workers=2)
    broken = IterableDataset.from_generator(
        lambda: iter([{"image": {"bytes": b"not an image", "path": "x.jpg"}}]), features=Features({"image": Image()})
    )
    with pytest.raises(
        ValueError, match=r"unlabeled example 0 of pass 0 \(process 0, worker 0\) \(x.jpg\): could not read"
    ):
        next(iter(SemiSupervisedStream(labeled_images(), broken, **OPTIONS)))


def test_a_generated_pool_is_the_same_scenes_however_it_is_sharded():
    from fpl_hf.data import stream_fashion_scenes

    def digests(pool):
        return [hash(example["image"].tobytes()) for example in pool]

    four, eight = stream_fashion_scenes(40, size=32, num_shards=4), stream_fashion_scenes(40, size=32, num_shards=8)
    assert (four.num_shards, eight.num_shards) == (4, 8)
    assert digests(four) == digests(eight) and len(set(digests(four))) == 40
    with pytest.raises(ValueError, match="at least `num_shards`"):
        stream_fashion_scenes(10, num_shards=64)


def test_a_local_webdataset_streams_as_an_unlabeled_pool(tmp_path):
    import io
    import tarfile

    from fpl_hf.data import DataSource, load_training_data

    for shard in range(2):
        with tarfile.open(tmp_path / f"pool-{shard:03d}.tar", "w") as tar:
            for index in range(3):
                encoded = io.BytesIO()
                PILImage.new("RGB", (8, 8), (40 * shard + index, 0, 0)).save(encoded, "PNG")
                member = tarfile.TarInfo(f"{shard}_{index}.png")
                member.size = len(encoded.getvalue())
                tar.addfile(member, io.BytesIO(encoded.getvalue()))
    source = DataSource(num_train_scenes=8, scene_size=16, num_labeled=2, unlabeled_dataset=str(tmp_path))
    pool = load_training_data(source).unlabeled
    assert pool.num_shards == 2 and pool.column_names == ["image"]
    stream = SemiSupervisedStream(labeled_images(), pool, **OPTIONS)
    assert sorted(read(stream, 6)) == [0, 1, 2, 40, 41, 42]
