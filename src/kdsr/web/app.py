"""``kdsr serve``: a local web page (Gradio) to upscale images without a terminal.

Drop or pick images, choose the model and the output scale (precision and tiling under "Advanced"), watch the
progress, compare bicubic and kdsr with a slider, and download each result or all of them as a zip. Jobs run one at
a time per page queue; uploads and results live in one temporary folder that is removed when the server stops.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kdsr.constants import DEFAULT_MAX_PIXELS
from kdsr.errors import KDSRError

#: Upload size limit (per file) unless ``kdsr serve --max-file-size`` says otherwise.
DEFAULT_MAX_FILE_MB = 50
SCALES = ("x4", "x3", "x2", "x1")
#: the page's degradation dials (estimator target -> ``assume`` key), in the order they are shown
DIALS = {"noise": "noise", "jpeg_quality": "jpeg", "blur_sigma": "blur"}


@dataclass
class Server:
    """What the page serves: the models it offers (label -> bundled name or file) and its working folder."""

    models: dict[str, str]
    workdir: Path
    max_pixels: int = DEFAULT_MAX_PIXELS
    _upscalers: dict = field(default_factory=dict)
    _estimators: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def upscaler(self, label: str, precision: str, tile: int, detail: float = 0.0):
        """One loaded model per (model, precision, tile, detail), kept for the next job
        (:func:`~kdsr.inference.opening.open_upscaler`: the torch-free path where the model's graphs exist)."""
        from kdsr.detail import DETAIL_DECIMALS
        from kdsr.inference.opening import open_upscaler
        from kdsr.inference.settings import UpscaleSettings

        if label not in self.models:
            raise KDSRError(f"unknown model {label!r}")
        detail = round(detail, DETAIL_DECIMALS)
        key = (label, precision, tile, detail)
        with self._lock:
            if key not in self._upscalers:
                settings = UpscaleSettings(precision=precision, tile=tile, detail=detail)
                self._upscalers[key] = open_upscaler(self.models[label], settings)
            return self._upscalers[key]

    def estimator(self, label: str, upscaler):
        """``image -> estimate`` when the model file carries an estimator (``kdsr estimate --fit``), else None;
        loaded once per model (on the torch-free path, the upscaler's graphs compute the IDR)."""
        with self._lock:
            if label not in self._estimators:
                if hasattr(upscaler, "degradation_reader"):
                    self._estimators[label] = upscaler.degradation_reader(self.models[label])
                else:
                    from kdsr.insight.estimator import load_estimator

                    self._estimators[label] = load_estimator(self.models[label])
            return self._estimators[label]

    def estimate(self, path: str, label: str) -> dict[str, float] | None:
        """The degradation the model reads off one image (estimator units), for the page's dials to open at; None
        when the model has no estimator or the file cannot be read."""
        from kdsr.image_io import read_image

        estimator = self.estimator(label, self.upscaler(label, "auto", 256))
        if estimator is None:
            return None
        try:
            reading = estimator(read_image(Path(path), max_pixels=self.max_pixels))
        except KDSRError:
            return None
        return dict(reading)

    def run(
        self,
        paths: list[str],
        label: str,
        scale: str,
        precision: str,
        tile: int,
        progress=None,
        assume: dict[str, float] | None = None,
        denoise: float = 1.0,
        detail: float = 0.0,
    ) -> dict:
        """Upscale the uploaded files into a fresh job folder; returns the slider pair (bicubic, kdsr) of the first
        image, every result, a zip of them, and one line per file (bad files are reported, not raised).
        ``assume`` / ``denoise`` / ``detail``: ``kdsr upscale --assume / --denoise / --detail``."""
        from kdsr.image_io import read_image, read_image_metadata, write_image
        from kdsr.inference.planning import output_path
        from kdsr.readout.steering import Steerer, Steering

        if not paths:
            raise KDSRError("add one or more images first")
        steering = Steering.from_options(assume, denoise)
        upscaler = self.upscaler(label, precision, tile, detail)
        upscaler.steerer = Steerer.for_model(self.models[label], steering) if steering.active else None
        estimator = self.estimator(label, upscaler)
        factor = int(scale.lstrip("x"))
        job = Path(tempfile.mkdtemp(prefix="job-", dir=self.workdir))
        results, lines, slider = [], [], None
        for index, source in enumerate(map(Path, paths)):
            if progress is not None:
                progress((index, len(paths)), desc=f"upscaling {source.name}")
            try:
                image = read_image(source, max_pixels=self.max_pixels)
                out = upscaler.upscale(image, outscale=factor)
            except KDSRError as e:
                lines.append(f"{source.name}: {e}")
                continue
            named = output_path(source, job, single_file=False, suffix="out", ext="auto", has_alpha=image.shape[2] == 4)
            target = _unique(named, results)  # the CLI's naming rule (x.png -> x_out.png), kept unique per job
            write_image(target, out, metadata=read_image_metadata(source, size=(out.shape[1], out.shape[0])))
            results.append(str(target))
            line = f"{source.name}: {image.shape[1]}x{image.shape[0]} -> {out.shape[1]}x{out.shape[0]}"
            if estimator is not None:
                from kdsr.readout.head import describe

                reading = estimator(image)
                line += f"; the model sees {describe(reading)}"
                if upscaler.steerer is not None:
                    line += f"; {upscaler.steerer.describe_told(reading)}"
            if detail:
                line += f"; detail {detail:g}"
            lines.append(line)
            if slider is None:
                write_image(job / f"{source.stem}_bicubic.png", _bicubic_preview(image, (out.shape[1], out.shape[0])))
                slider = (str(job / f"{source.stem}_bicubic.png"), str(target))
        archive = None
        if results:
            archive = job / "kdsr-results.zip"
            with zipfile.ZipFile(archive, "w") as bundle:
                for path in results:
                    bundle.write(path, Path(path).name)
        return {"slider": slider, "results": results, "zip": str(archive) if archive else None, "log": lines}


def _unique(target: Path, taken: list[str]) -> Path:
    """``target``, or ``name-2.png``, ``name-3.png``, ... when an earlier upload of this job (same file name from
    two folders) already has that name: every result is kept and the zip holds each once."""
    candidate, count = target, 1
    while str(candidate) in taken:
        count += 1
        candidate = target.with_name(f"{target.stem}-{count}{target.suffix}")
    return candidate


def build_app(server: Server):
    """The Gradio page for ``server``."""
    import gradio as gr

    from kdsr.constants import PRECISION_NAMES

    labels = list(server.models)

    def paths_of(files) -> list[str]:
        return [f if isinstance(f, str) else f.name for f in files or []]

    def read_dials(files, label):
        """The dials open at what the model reads off the first image (and remember it)."""
        paths = paths_of(files)
        estimate = server.estimate(paths[0], label) if paths else None
        if not estimate:
            return None, *(gr.update() for _ in DIALS)
        return estimate, *(gr.update(value=round(estimate[name], 1)) if name in estimate else gr.update()
                           for name in DIALS)  # fmt: skip

    def upscale(files, label, scale, precision, tile, detail, denoise, estimate, *dials, progress=gr.Progress()):  # noqa: B008
        # a dial counts as stated once it is moved off the first image's estimate
        assume = {DIALS[name]: value for name, value in zip(DIALS, dials, strict=True)
                  if estimate and name in estimate and abs(value - round(estimate[name], 1)) > 1e-6}  # fmt: skip
        try:
            out = server.run(paths_of(files), label, scale, precision, int(tile), progress, assume, float(denoise),
                             float(detail))  # fmt: skip
        except KDSRError as e:
            raise gr.Error(str(e)) from None
        files_out = [*out["results"], *([out["zip"]] if out["zip"] else [])]
        return out["slider"], out["results"], files_out, "\n".join(out["log"])

    with gr.Blocks(title="kdsr: blind image super-resolution") as app:
        gr.Markdown(
            "## kdsr: blind image super-resolution\nDrop images, pick a model, press **Upscale**. Everything runs "
            "on this computer; nothing is uploaded anywhere else."
        )
        with gr.Row():
            with gr.Column(scale=1):
                files = gr.File(label="Images", file_count="multiple", file_types=["image"], elem_id="inputs")
                model = gr.Dropdown(labels, value=labels[0], label="Model", elem_id="model")
                scale = gr.Radio(list(SCALES), value="x4", label="Output scale", elem_id="scale")
                detail = gr.Slider(0, 1, value=0, step=0.05, label="Detail (0: faithful, 1: sharpest; kdsr-real-x4 "
                                   "only)", elem_id="detail")  # fmt: skip
                with gr.Accordion("Degradation", open=True):
                    denoise = gr.Slider(0, 2, value=1, step=0.05, label="Denoise (1: as estimated, 0: keep grain and "
                                        "JPEG, 2: stronger)", elem_id="denoise")  # fmt: skip
                    estimate = gr.State(None)
                    dials = [
                        gr.Slider(0, 50, value=0, step=0.5, label="Noise (0-255; opens at the estimate)",
                                  elem_id="noise"),
                        gr.Slider(1, 100, value=100, step=1, label="JPEG quality (opens at the estimate)",
                                  elem_id="jpeg"),
                        gr.Slider(0, 6, value=0, step=0.1, label="Blur sigma (HR px; opens at the estimate)",
                                  elem_id="blur"),
                    ]  # fmt: skip
                with gr.Accordion("Advanced", open=False):
                    precision = gr.Radio(["auto", *PRECISION_NAMES], value="auto", label="Precision")
                    tile = gr.Number(value=256, precision=0, minimum=0, label="Tile size (LR pixels, 0: whole image)")
                run = gr.Button("Upscale", variant="primary", elem_id="run")
            with gr.Column(scale=2):
                slider = gr.ImageSlider(label="bicubic | kdsr (first image)", type="filepath", elem_id="slider")
                gallery = gr.Gallery(label="Results", elem_id="gallery", object_fit="contain", height=360)
                downloads = gr.File(label="Download", file_count="multiple", elem_id="downloads")
                log = gr.Textbox(label="Log", lines=3, elem_id="log")
        files.change(read_dials, [files, model], [estimate, *dials])
        model.change(read_dials, [files, model], [estimate, *dials])
        inputs = [files, model, scale, precision, tile, detail, denoise, estimate, *dials]
        run.click(upscale, inputs, [slider, gallery, downloads, log])
    return app


def serve(
    models: dict[str, str],
    host: str = "127.0.0.1",
    port: int = 7860,
    max_file_mb: int = DEFAULT_MAX_FILE_MB,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    open_browser: bool = False,
) -> None:
    """Start the page and block until interrupted; the working folder is removed on the way out."""
    import signal

    def stop(signum, frame):  # SIGTERM (a service manager, `kill`) ends it like Ctrl-C: the finally below runs
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    # Ctrl-C too, explicitly: a process started in the background by a shell inherits SIGINT ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    workdir = Path(tempfile.mkdtemp(prefix="kdsr-serve-"))
    os.environ["GRADIO_TEMP_DIR"] = str(workdir / "uploads")  # Gradio's own copies of uploads go there too
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no network calls
    try:
        try:
            import gradio  # noqa: F401
        except ImportError:
            raise KDSRError("kdsr serve needs Gradio: pip install 'kdsr[web]'") from None
        app = build_app(Server(models, workdir, max_pixels))
        app.queue(default_concurrency_limit=1)
        app.launch(  # quiet and not blocking: kdsr prints its own lines (no "share=True" hint) and waits itself
            server_name=host,
            server_port=port,
            max_file_size=f"{max_file_mb}mb",
            inbrowser=open_browser,
            allowed_paths=[str(workdir)],
            ssr_mode=False,
            footer_links=[],
            quiet=True,
            prevent_thread_lock=True,
        )
        print(f"kdsr serve: {app.local_url} (Ctrl-C to stop)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("kdsr serve: stopped", flush=True)
        finally:
            app.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _bicubic_preview(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The image enlarged to ``size`` (width, height) by plain bicubic, 8-bit: the slider's "before" side."""
    from PIL import Image

    from kdsr.image_io import to_uint8

    small = to_uint8(image)
    picture = Image.fromarray(small[:, :, 0] if small.shape[2] == 1 else small)
    return np.asarray(picture.resize(size, Image.Resampling.BICUBIC)).reshape(size[1], size[0], -1)
