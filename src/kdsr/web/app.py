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

from kdsr.constants import DEFAULT_MAX_PIXELS
from kdsr.errors import KDSRError

#: Upload size limit (per file) unless ``kdsr serve --max-file-size`` says otherwise.
DEFAULT_MAX_FILE_MB = 50
SCALES = ("x4", "x3", "x2", "x1")


@dataclass
class Server:
    """What the page serves: the models it offers (label -> bundled name or file) and its working folder."""

    models: dict[str, str]
    workdir: Path
    max_pixels: int = DEFAULT_MAX_PIXELS
    _upscalers: dict = field(default_factory=dict)
    _estimators: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def upscaler(self, label: str, precision: str, tile: int):
        """One loaded model per (model, precision, tile), kept for the next job: on the torch-free path when the
        model's graphs are cached (:mod:`kdsr.inference.fastpath`), else the fastest installed backend."""
        from kdsr.inference.fastpath import fast_backend, open_fast_upscaler

        if label not in self.models:
            raise KDSRError(f"unknown model {label!r}")
        key = (label, precision, tile)
        with self._lock:
            if key not in self._upscalers:
                backend = fast_backend("auto", None, precision)
                upscaler = open_fast_upscaler(self.models[label], backend, precision, tile=tile) if backend else None
                if upscaler is None:
                    from kdsr.inference.upscaler import Upscaler

                    upscaler = Upscaler(self.models[label], precision=precision, tile=tile, backend="auto")
                self._upscalers[key] = upscaler
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

    def run(self, paths: list[str], label: str, scale: str, precision: str, tile: int, progress=None) -> dict:
        """Upscale the uploaded files into a fresh job folder; returns the slider pair (bicubic, kdsr) of the first
        image, every result, a zip of them, and one line per file (bad files are reported, not raised)."""
        import cv2

        from kdsr.image_io import read_image, read_image_metadata, write_image
        from kdsr.inference.planning import output_path

        if not paths:
            raise KDSRError("add one or more images first")
        upscaler = self.upscaler(label, precision, tile)
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
                from kdsr.insight.head import describe

                line += f"; the model sees {describe(estimator(image))}"
            lines.append(line)
            if slider is None:
                size = (out.shape[1], out.shape[0])
                bicubic = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC).reshape(out.shape)
                write_image(job / f"{source.stem}_bicubic.png", bicubic)
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

    def upscale(files, label, scale, precision, tile, progress=gr.Progress()):  # noqa: B008 - Gradio injects it
        try:
            out = server.run([f if isinstance(f, str) else f.name for f in files or []], label, scale, precision,
                             int(tile), progress)  # fmt: skip
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
                with gr.Accordion("Advanced", open=False):
                    precision = gr.Radio(["auto", *PRECISION_NAMES], value="auto", label="Precision")
                    tile = gr.Number(value=256, precision=0, minimum=0, label="Tile size (LR pixels, 0: whole image)")
                run = gr.Button("Upscale", variant="primary", elem_id="run")
            with gr.Column(scale=2):
                slider = gr.ImageSlider(label="bicubic | kdsr (first image)", type="filepath", elem_id="slider")
                gallery = gr.Gallery(label="Results", elem_id="gallery", object_fit="contain", height=360)
                downloads = gr.File(label="Download", file_count="multiple", elem_id="downloads")
                log = gr.Textbox(label="Log", lines=3, elem_id="log")
        run.click(upscale, [files, model, scale, precision, tile], [slider, gallery, downloads, log])
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
