"""examples/demo/app.py in a real browser (Debian's Chromium driven by Playwright): an upload gives the overlay that
`pipeline("image-segmentation")` gives for the same model and image, and the threshold slider changes the K map."""

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from conftest import ROOT, make_trainer
from PIL import Image

from fpl_hf.demo import DemoModel, enlarged
from fpl_hf.viz import overlay

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, scenes):
    if os.environ.get("FPL_DEMO_MODEL"):  # README's screenshot: the model the main command trained
        return os.environ["FPL_DEMO_MODEL"]
    directory = tmp_path_factory.mktemp("demo")
    trainer = make_trainer(scenes, directory, framework="supervised", max_steps=30, learning_rate=0.05)
    trainer.train()
    trainer.save_model(str(directory / "model"))
    return directory / "model"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def pipeline_overlay(model_path, image: Image.Image) -> Image.Image:
    """What pipeline("image-segmentation") says of the image, drawn as the demo draws it."""
    from transformers import pipeline

    segmenter = pipeline("image-segmentation", model=str(model_path))
    config = segmenter.model.config
    classes = np.zeros((image.height, image.width), dtype=np.int64)
    for mask in segmenter(image):
        classes[np.asarray(mask["mask"]) > 0] = config.label2id[mask["label"]]
    return overlay(image.convert("RGB"), classes, config.num_labels)


def test_the_demo_reads_grey_transparent_and_odd_sized_images_and_refuses_a_folder_that_is_no_model(
    saved_model, tmp_path
):
    model = DemoModel(str(saved_model))
    grey = Image.fromarray(np.random.default_rng(0).integers(0, 255, (37, 51), dtype=np.uint8))
    transparent = Image.new("RGBA", (45, 29), (200, 10, 10, 0))
    for image in (grey, transparent):
        result = model.segment(image)
        assert result.classes.shape == (image.height, image.width) and model.overlay(result).size == image.size
        assert model.k_map(result, 0.9).size == image.size
        present = np.unique(result.classes)
        legend = model.legend(result)
        assert legend.count("<tr>") == 1 + len(present)
        assert all(model.class_names[index] in legend for index in present)
    big = Image.new("RGB", (400, 300))
    assert enlarged(big).size == (400, 300)
    assert enlarged(transparent).size == (45 * 7, 29 * 7)  # 315: the largest whole factor within 320
    (tmp_path / "not_a_model").mkdir()
    refused = subprocess.run(
        [sys.executable, "examples/demo/app.py", "--model", str(tmp_path / "not_a_model")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert refused.returncode == 2 and "is not a model folder: it has no config.json" in refused.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/setup.sh installs it)")
def test_the_demo_in_a_browser_shows_the_pipelines_segmentation_and_a_k_map_that_follows_the_slider(
    saved_model, tmp_path
):
    from playwright.sync_api import sync_playwright

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "examples/demo/app.py", "--model", str(saved_model), "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    image_path = ROOT / "examples" / "demo" / "images" / "scene_0.png"
    image = Image.open(image_path)
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--disable-quic",
                ],
            )
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url)
            page.locator("#image input[type=file]").set_input_files(str(image_path))
            page.wait_for_selector("#overlay img", timeout=60_000)
            page.wait_for_selector("#k_map img", timeout=60_000)

            def picture(element_id: str) -> Image.Image:
                source = page.locator(f"#{element_id} img").get_attribute("src")
                return Image.open(io.BytesIO(page.request.get(source).body()))

            shown = picture("overlay")
            factor = shown.width // image.width  # the 64-pixel scene is shown 5 times larger, each pixel repeated
            assert factor == 5 and shown.size == (image.width * factor, image.height * factor)
            exact = np.asarray(pipeline_overlay(saved_model, image))
            assert np.array_equal(np.asarray(shown.convert("RGB")), exact.repeat(factor, 0).repeat(factor, 1))
            before = np.asarray(picture("k_map").convert("RGB"))
            before_source = page.locator("#k_map img").get_attribute("src")  # read before the slider moves
            page.locator("#threshold input[type=number]").fill("0.99")
            page.locator("#threshold input[type=number]").press("Enter")
            page.wait_for_function(
                "source => document.querySelector('#k_map img').getAttribute('src') !== source",
                arg=before_source,
                timeout=60_000,
            )
            after = np.asarray(picture("k_map").convert("RGB"))
            assert after.shape == before.shape and not np.array_equal(after, before)
            page.screenshot(path=os.environ.get("FPL_DEMO_SCREENSHOT", str(tmp_path / "demo.png")))
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
