"""A demo page for a model run_fpl.py trained: upload or pick an image, see its segmentation over it with a legend and
each class's share of the pixels, and the fuzzy positive sets FPL would give each pixel at a threshold you choose.

    python examples/demo/app.py --model outputs/fpl-embedded          # a local output directory
    python examples/demo/app.py --model my-name/fpl-embedded --port 7860   # or a Hub model id

As a Hugging Face Space: this folder (app.py, README.md, requirements.txt), with the model id in the Space's
FPL_DEMO_MODEL variable.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import gradio as gr

from fpl_hf.demo import DemoModel, enlarged

EXAMPLES = sorted(str(path) for path in (Path(__file__).parent / "images").glob("*.png"))


def build(model: DemoModel) -> gr.Blocks:
    with gr.Blocks(title="fpl-hf demo") as page:
        gr.Markdown(f"# Semantic segmentation with Fuzzy Positive Learning\nModel: `{model.name}`")
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="pil", image_mode=None, label="image", elem_id="image", height=320)
                threshold = gr.Slider(0.5, 0.99, value=0.9, step=0.01, label="FPL threshold T", elem_id="threshold")
                if EXAMPLES:
                    gr.Examples(EXAMPLES, inputs=image)
            with gr.Column():
                shown = gr.Image(type="pil", format="png", label="segmentation", elem_id="overlay", height=320)
                legend = gr.HTML(elem_id="legend")
            with gr.Column():
                k_map = gr.Image(
                    type="pil", format="png", label="K: fuzzy positive set size", elem_id="k_map", height=320
                )
                gr.HTML(model.k_legend())
        segmentation = gr.State()

        def on_image(picture, value):
            if picture is None:
                return None, None, "", None
            result = model.segment(picture)
            return result, enlarged(model.overlay(result)), model.legend(result), enlarged(model.k_map(result, value))

        def on_threshold(result, value):
            return None if result is None else enlarged(model.k_map(result, value))

        image.change(on_image, [image, threshold], [segmentation, shown, legend, k_map])
        threshold.change(on_threshold, [segmentation, threshold], k_map)
    return page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=os.environ.get("FPL_DEMO_MODEL"), help="Output directory or Hub model id.")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    options = parser.parse_args()
    if not options.model:
        parser.error("give --model (an output directory of run_fpl.py or a Hub model id), or set FPL_DEMO_MODEL.")
    try:
        model = DemoModel(options.model)
    except ValueError as error:
        parser.exit(2, f"demo: {error}\n")
    build(model).launch(server_name="127.0.0.1", server_port=options.port)


if __name__ == "__main__":
    main()
