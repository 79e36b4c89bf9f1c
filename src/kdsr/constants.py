"""Names and defaults shared by the library and the command line, in a module that imports nothing heavy, so that
``kdsr --help`` and argument errors answer without loading torch or OpenCV."""

from __future__ import annotations

#: Benchmark protocols (``kdsr.evaluation``) and PSNR/SSIM conventions (``kdsr.metrics``).
PROTOCOLS = ("gaussian8", "aniso", "paired", "everyday")
CONVENTIONS = ("official", "basicsr")
#: Inference precisions (each maps to a torch dtype in ``kdsr.devices.PRECISIONS``).
PRECISION_NAMES = ("fp32", "fp16", "bf16")
#: What the OpenVINO backend adds: the generator quantised to INT8 (``kdsr.export.int8``).
OPENVINO_ONLY_PRECISIONS = ("int8",)
ALPHA_UPSAMPLERS = ("kdsr", "bicubic")
#: What runs the network (``kdsr.inference.backends``): torch, onnxruntime, OpenVINO.
BACKENDS = ("torch", "onnx", "openvino")
#: LR pixels per side the IDR is estimated from by default; the README section "Speed" has the measurements behind it.
DEFAULT_IDR_VIEW = 256
#: LR context pixels each tile sees beyond its borders, and pixels blended between adjacent tiles.
#: LR tile size when none is given, by device type (CUDA: larger tiles, fewer launches; memory allows it)
DEFAULT_TILES = {"cuda": 512}
DEFAULT_TILE = 256
TILE_PAD = 24
TILE_OVERLAP = 8
#: LR rows per band of the generator's upsampling tail at inference (``KDSRGenerator._upsample`` in torch, the
#: OpenVINO runtime's split generator), and LR rows of context each band sees beyond its own: the tail's 2x and 4x
#: feature maps are the largest tensors of a forward pass (hundreds of MB for a 256-pixel tile).
TAIL_BAND = 32
TAIL_CONTEXT = 2
#: Gaussian sigma (LR pixels) of the low-pass in the colour fix (``kdsr.inference.fidelity``): wide enough to leave
#: detail alone (Gaussian8 on Set5 with kdsr-iso-x4: -0.018 dB at sigma 2, -0.005 dB at 4), narrow enough to follow
#: colour across an image.
COLOR_FIX_SIGMA = 4.0
#: Added to the standard deviation of an image before the energy encoder divides by it (a flat image stays finite):
#: about 2.5 levels (``kdsr.models.encoder.standardise``).
STD_FLOOR = 0.01
#: LR pixels replicated around the image before the network (``kdsr.inference.fidelity``): with the colour fix a
#: flat 48x64 image comes out within 0 levels at 8 and 16, but 4 levels off at 4 and 9 at 2 (kdsr-real-x4, seven
#: colours).
BORDER_PAD = 8
#: Largest image (pixels, from the file header) that is decoded at all: a small file can declare a huge image
#: (a "decompression bomb"); this refuses it before any memory is spent. 100 MP is larger than any camera photo.
DEFAULT_MAX_PIXELS = 100_000_000
#: x264/VP9 constant quality of video outputs.
DEFAULT_CRF = 18
#: Extensions that ``kdsr upscale`` picks up in a folder and can write.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
#: Formats that keep an alpha channel / 16-bit samples when written.
ALPHA_EXTENSIONS = (".png", ".webp", ".tif", ".tiff")
#: Image files a run reads besides those it writes: a GIF (its first frame, with a warning) gives a PNG.
INPUT_IMAGE_EXTENSIONS = (*IMAGE_EXTENSIONS, ".gif")
HIGH_DEPTH_EXTENSIONS = (".png", ".tif", ".tiff")
#: Output formats that carry kdsr's mark (EXIF Software; OpenCV writes TIFF and BMP without metadata).
MARKED_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
#: Video containers ``kdsr upscale`` reads and writes.
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi")
#: The IDR vectors a degradation estimator can read: the compact ``d`` that conditions the generator (the paper's
#: D), or the uncompressed ``d_prime`` that a KD student learns to match (D').
IDR_FEATURES = ("d", "d_prime")
#: read-outs of a degradation estimator: the standardised IDR ``z``, or ``z`` and its element-wise square (quadratic,
#: which follows how JPEG and noise interact in the IDR better than a linear one)
ESTIMATOR_TERMS = ("linear", "quadratic")
