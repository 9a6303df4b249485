"""Pictures in the user's tracker: panels at each evaluation through transformers' TensorBoard and trackio
integrations, read back as a user's viewer would."""

import io
import json
import sqlite3

import numpy as np
import torch
from conftest import make_trainer
from PIL import Image

from fpl_hf.viz import colorize

PANELS = {"validation/0": (128, 384), "validation/1": (128, 384), "unlabeled/0": (128, 512), "unlabeled/1": (128, 512)}


def test_tensorboard_holds_the_panels_of_each_evaluation(scenes, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = make_trainer(
        scenes,
        tmp_path,
        framework="mean_teacher",
        max_steps=4,
        eval_strategy="steps",
        eval_steps=2,
        report_to="tensorboard",
        picture_images=2,
    )
    trainer.train()
    (log_dir,) = (tmp_path / "run" / "runs").iterdir()
    events = EventAccumulator(str(log_dir), size_guidance={"images": 0})
    events.Reload()
    assert set(events.Tags()["images"]) == set(PANELS)
    for tag, (height, width) in PANELS.items():
        assert [(image.step, image.height, image.width) for image in events.Images(tag)] == [
            (2, height, width),
            (4, height, width),
        ]
    # The last panel is the trained network's: its prediction strip is that network's arg-max, coloured, x4.
    (last,) = [image for image in events.Images("validation/0") if image.step == 4]
    panel = np.asarray(Image.open(io.BytesIO(last.encoded_image_string)).convert("RGB"))
    with torch.no_grad():
        logits = trainer.model.eval().segment(trainer.eval_dataset[0]["pixel_values"][None])
    prediction = np.asarray(colorize(logits.argmax(1)[0].numpy(), 11).resize((128, 128), Image.NEAREST))
    assert np.array_equal(panel[:, 256:], prediction)


def test_trackio_run_locally_holds_the_panels(scenes, tmp_path, monkeypatch):
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))
    trainer = make_trainer(
        scenes,
        tmp_path,
        framework="cps",
        max_steps=4,
        eval_strategy="steps",
        eval_steps=2,
        report_to="trackio",
        picture_images=2,
        project="fpl-pictures",
    )
    trainer.train()
    database = sqlite3.connect(tmp_path / "trackio" / "fpl-pictures.db")
    logged = {}
    for step, metrics in database.execute("select step, metrics from metrics"):
        for tag, value in json.loads(metrics).items():
            if isinstance(value, dict) and value.get("_type") == "trackio.image":
                logged[(tag, step)] = tmp_path / "trackio" / "media" / value["file_path"]
    assert set(logged) == {(tag, step) for tag in PANELS for step in (2, 4)}
    for (tag, _), path in logged.items():
        with Image.open(path) as picture:
            assert (picture.height, picture.width) == PANELS[tag]
