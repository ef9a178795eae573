"""The baseline for the Space's serving figures: a bare Gradio app, the same image in, one Label out, no nets.

    python benchmarks/bare_app.py      # serves on GRADIO_SERVER_PORT (default 7870)

What the Space costs beyond Gradio itself is the Space's figure minus this app's, measured in the same run
(benchmarks/space_latency.py --serve starts both).
"""

import os

import gradio as gr


def predict(image: str) -> dict:
    return {"airplane": 0.5, "bird": 0.5}


with gr.Blocks(title="bare") as demo:
    image = gr.Image(type="filepath")
    label = gr.Label()
    image.change(predict, image, label, api_name="predict")

if __name__ == "__main__":
    demo.queue().launch(server_name="127.0.0.1", server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7870")))
