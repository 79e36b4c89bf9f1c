"""Reading and writing images as numpy arrays: RGB(A) channel order, uint8 or uint16, EXIF orientation applied.

OpenCV does the decoding where it is installed (16-bit PNG and TIFF, alpha, JPEG, WebP), Pillow where it is not (it
cannot hold 16-bit colour: such files then need OpenCV, said in one line); Pillow reads the header (size, frames, and
the EXIF orientation tag, which OpenCV ignores when asked to keep alpha and bit depth), from the bytes read once.
PNGs are written by :mod:`kdsr.png_stream` band by band, other formats by OpenCV where installed, else (and where
metadata must be embedded) by Pillow. Writes are atomic: a temp file, then a rename.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from kdsr import png_stream
from kdsr.atomic import atomic_write_bytes
from kdsr.constants import (  # noqa: F401 - the extension lists are part of this module's interface
    ALPHA_EXTENSIONS,
    DEFAULT_MAX_PIXELS,
    HIGH_DEPTH_EXTENSIONS,
    IMAGE_EXTENSIONS,
    INPUT_IMAGE_EXTENSIONS,
    MARKED_EXTENSIONS,
)
from kdsr.errors import ImageError


def visible_files(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """The regular files of a folder (with ``recursive``, of its sub-folders too), sorted; hidden files and anything
    inside hidden folders left out. The one listing rule of kdsr (upscale inputs, data sets, benchmarks)."""
    folder = Path(folder)
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p for p in found if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The image files of a folder (by extension, :data:`IMAGE_EXTENSIONS`), sorted; an error when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder}: not a folder")
    files = [p for p in visible_files(folder) if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not files:
        raise ImageError(f"{folder}: no images")
    return files


class ImageInfo(NamedTuple):
    """What an image file's header says."""

    width: int
    height: int
    frames: int  # > 1 for animated or multi-page files
    orientation: int  # EXIF orientation 1-8 (1 when absent or unreadable)


def probe_image(source: str | os.PathLike | np.ndarray, name: str | os.PathLike | None = None) -> ImageInfo:
    """Read an image's header without decoding its pixels; ``source`` is a path or the file's bytes (``name`` is
    then the path used in messages)."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = None  # the size is checked by the caller, against its own limit
    name = name if name is not None else source
    unreadable = (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError)
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, np.ndarray) else source) as im:
            try:
                orientation = _header_exif(im).get(0x0112, 1)
            except unreadable:
                orientation = 1
            orientation = orientation if orientation in range(1, 9) else 1
            return ImageInfo(im.width, im.height, getattr(im, "n_frames", 1), orientation)
    except unreadable:
        raise ImageError(f"{name}: not a readable image (corrupt or unsupported format)") from None


def probe_within_limit(
    source: str | os.PathLike | np.ndarray, max_pixels: int, name: str | os.PathLike | None = None
) -> ImageInfo:
    """:func:`probe_image`, and an error when the header declares more than ``max_pixels`` pixels (a decompression
    bomb is refused from its header, before any pixel is decoded)."""
    info = probe_image(source, name)
    if info.width * info.height > max_pixels:
        shown = name if name is not None else source
        size = f"{info.width}x{info.height}"
        raise ImageError(f"{shown}: {size} is over the limit of {max_pixels:,} pixels (--max-pixels)")
    return info


def _header_exif(im):
    """The EXIF of an image, without decoding pixels: Pillow's ``getexif`` on a PNG decodes the whole image to look
    for an eXIf chunk after the pixel data (seconds and gigabytes for a 30000x30000 "bomb"), so a PNG's chunks are
    walked instead (:func:`_png_exif`), wherever the eXIf chunk sits."""
    from PIL import Image

    if im.format == "PNG":
        exif = Image.Exif()
        raw = im.info.get("exif") or _png_exif(im.fp)
        if raw:
            exif.load(raw)
        return exif
    return im.getexif()


def _png_exif(stream) -> bytes | None:
    """The data of a PNG's eXIf chunk, found by walking the chunk headers (each chunk's data is skipped, not read);
    None when there is none or the file ends early."""
    position = stream.tell()
    try:
        stream.seek(8)  # the PNG signature
        while header := stream.read(8):
            if len(header) < 8:
                return None
            length, kind = int.from_bytes(header[:4], "big"), header[4:]
            if kind == b"eXIf":
                data = stream.read(length)
                return data if len(data) == length else None
            if kind == b"IEND":
                return None
            stream.seek(length + 4, os.SEEK_CUR)  # the data and its CRC
        return None
    finally:
        stream.seek(position)


class ImageMetadata(NamedTuple):
    """What an upscaled copy keeps of its source: the ICC colour profile and the EXIF block, both raw bytes."""

    icc_profile: bytes | None = None
    exif: bytes | None = None  # with its "Exif\0\0" prefix


EXIF_PREFIX = b"Exif\x00\x00"
_ORIENTATION, _EXIF_IFD, _PIXEL_X, _PIXEL_Y, _SOFTWARE = 0x0112, 0x8769, 0xA002, 0xA003, 0x0131
#: the EXIF Software value of every upscaled image kdsr writes (PNG, JPEG, WebP): how a later run tells its own
#: earlier outputs (replaceable under --overwrite) from a user's file that happens to share the name
OUTPUT_MARK = "kdsr"


def has_output_mark(path: str | os.PathLike) -> bool:
    """Whether an image file's header EXIF says kdsr wrote it (read without decoding pixels; False if unreadable)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return _header_exif(im).get(_SOFTWARE) == OUTPUT_MARK
    except Exception:  # noqa: BLE001 - an unreadable file is not one of ours
        return False


def read_image_metadata(path: str | os.PathLike, size: tuple[int, int] | None = None) -> ImageMetadata:
    """The ICC profile and EXIF of an image file, the EXIF made true of its upscaled copy: orientation 1 (pixels are
    stored as :func:`read_image` returns them, already turned), given ``size`` (width, height) the pixel dimensions,
    and Software :data:`OUTPUT_MARK`. Unreadable metadata is left out (the mark stays), never an error."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            icc = im.info.get("icc_profile") or None
            exif = _header_exif(im)
            exif[_SOFTWARE] = OUTPUT_MARK
            if _ORIENTATION in exif:
                exif[_ORIENTATION] = 1
            if size is not None:
                sub = exif.get_ifd(_EXIF_IFD)
                for tag, value in ((_PIXEL_X, size[0]), (_PIXEL_Y, size[1])):
                    if tag in sub:
                        sub[tag] = value
            data = exif.tobytes()
    except Exception:  # noqa: BLE001 - metadata is a courtesy: a file whose pixels read fine still upscales
        marked = Image.Exif()
        marked[_SOFTWARE] = OUTPUT_MARK
        return ImageMetadata(None, EXIF_PREFIX + marked.tobytes())
    return ImageMetadata(icc, data if data.startswith(EXIF_PREFIX) else EXIF_PREFIX + data)


def _png_metadata_chunks(metadata: ImageMetadata | None) -> bytes:
    """iCCP and eXIf chunks for a PNG's header."""
    chunks = b""
    if metadata and metadata.icc_profile:
        chunks += png_stream.chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(metadata.icc_profile))
    if metadata and metadata.exif:
        chunks += png_stream.chunk(b"eXIf", metadata.exif.removeprefix(EXIF_PREFIX))
    return chunks


def _pillow_encode(image: np.ndarray, ext: str, quality: int, metadata: ImageMetadata | None) -> bytes:
    """JPEG/WebP (with ICC and EXIF, which OpenCV cannot embed), BMP and TIFF through Pillow: 8-bit, and 16-bit grey
    TIFF (Pillow holds no 16-bit colour)."""
    from PIL import Image

    if image.dtype == np.uint16 and image.shape[2] != 1:
        raise ImageError(f"16-bit colour '{ext}' output needs OpenCV (pip install opencv-python-headless); a 16-bit "
                         "PNG needs nothing more")  # fmt: skip
    picture = Image.fromarray(np.ascontiguousarray(image[:, :, 0]) if image.shape[2] == 1 else image)
    metadata = metadata or ImageMetadata(None, None)
    extra = {k: v for k, v in (("icc_profile", metadata.icc_profile), ("exif", metadata.exif)) if v}
    if ext in (".jpg", ".jpeg", ".webp"):
        extra["quality"] = min(quality, 100)
    if ext == ".webp" and quality > 100:
        extra["lossless"] = True
    buffer = io.BytesIO()
    formats = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}
    picture.save(buffer, format=formats[ext], **extra)
    return buffer.getvalue()


def opencv():
    """OpenCV's ``cv2`` module, or None where it is not installed (kdsr then decodes, encodes and resizes with
    Pillow and numpy)."""
    try:
        import cv2
    except ImportError:
        return None
    return cv2


#: Pillow modes read as they are (uint8 grey, RGB, RGBA; uint16 grey); the others are converted
_PILLOW_MODES = {"L": None, "RGB": None, "RGBA": None, "I;16": None, "I;16L": None, "I;16B": None, "1": "L",
                 "P": "RGB", "PA": "RGBA", "LA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB", "RGBX": "RGB"}  # fmt: skip


def _pillow_decode(data: np.ndarray, path: Path) -> np.ndarray:
    """The first frame of an image file's bytes as (H, W, C) uint8 / uint16 grey, through Pillow."""
    from PIL import Image

    if data[:8].tobytes() == b"\x89PNG\r\n\x1a\n" and data.size > 25 and data[24] == 16 and data[25] in (2, 6):
        raise ImageError(f"{path}: a 16-bit colour PNG; reading it needs OpenCV (pip install opencv-python-headless)")
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format == "TIFF" and max(im.tag_v2.get(258, (8,)) or (8,)) > 8 and im.mode != "I;16":
                raise ImageError(f"{path}: a high-bit-depth colour TIFF; reading it needs OpenCV "
                                 "(pip install opencv-python-headless)")  # fmt: skip
            mode = im.mode
            if mode == "P" and "transparency" in im.info:
                mode = "PA"
            if mode == "I":  # 16-bit grey as older Pillows open it
                image = np.asarray(im)
                if image.max(initial=0) > 65535 or image.min(initial=0) < 0:
                    raise ImageError(f"{path}: unsupported sample type (8- and 16-bit images are supported)")
                image = image.astype(np.uint16)
            elif mode in _PILLOW_MODES:
                image = np.asarray(im if _PILLOW_MODES[mode] is None else im.convert(_PILLOW_MODES[mode]))
            else:
                raise ImageError(f"{path}: unsupported image mode {im.mode} (8- and 16-bit images are supported)")
    except (OSError, ValueError, SyntaxError, EOFError):
        raise ImageError(f"{path}: not a readable image (corrupt or unsupported format)") from None
    image = image.astype(np.uint16) if image.dtype.byteorder == ">" else image  # I;16B: native order
    return image[:, :, None] if image.ndim == 2 else image


def _opencv_decode(cv2, data: np.ndarray, path: Path) -> np.ndarray:
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise ImageError(f"{path}: not a readable image (corrupt or unsupported format)")
    if image.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"{path}: unsupported sample type {image.dtype} (8- and 16-bit images are supported)")
    if image.ndim == 2:
        return image[:, :, None]
    if image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    raise ImageError(f"{path}: unsupported channel count {image.shape[2]}")


def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image as an (H, W, C) array, C in {1, 3, 4} (grey, RGB, RGBA), dtype uint8 or uint16.

    The size in the header is checked against ``max_pixels`` before decoding. Of an animated or multi-page file only
    the first frame is read, with a warning.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise ImageError(f"{path}: cannot read file ({e.strerror or e})") from None
    if data.size == 0:
        raise ImageError(f"{path}: empty file")
    info = probe_within_limit(data, max_pixels, name=path)
    if info.frames > 1:
        warnings.warn(f"{path}: has {info.frames} frames or pages; only the first is used", stacklevel=2)
    cv2 = opencv()  # here, not at import: argument and path checks answer without loading OpenCV
    image = _opencv_decode(cv2, data, path) if cv2 is not None else _pillow_decode(data, path)
    return np.ascontiguousarray(apply_exif_orientation(image, info.orientation))


def apply_exif_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Transform an (H, W, C) array as a viewer does for the EXIF orientation code."""
    transposed = image.transpose(1, 0, 2)
    return {
        1: image,
        2: image[:, ::-1],
        3: image[::-1, ::-1],
        4: image[::-1],
        5: transposed,
        6: transposed[:, ::-1],
        7: transposed[::-1, ::-1],
        8: transposed[::-1],
    }[orientation]


def write_image(
    path: str | os.PathLike, image: np.ndarray, quality: int = 95, metadata: ImageMetadata | None = None
) -> None:
    """Write an (H, W, C) RGB(A)/grey array atomically; 16-bit is reduced to 8-bit for formats without it.
    ``quality`` (1-100) is for JPEG and WebP (101: lossless WebP, OpenCV's convention); ``metadata`` (ICC profile,
    EXIF) is embedded in PNG, JPEG and WebP. A writeable ``image`` has its red and blue swapped in place while it
    is encoded (restored before this returns): a large output is never copied whole."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        raise ImageError(f"{path}: unsupported output format '{ext}' (use one of {', '.join(IMAGE_EXTENSIONS)})")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.dtype == np.uint16 and ext not in HIGH_DEPTH_EXTENSIONS:
        image = to_uint8(image)
    channels = image.shape[2]
    if channels == 4 and ext not in ALPHA_EXTENSIONS:
        raise ImageError(f"{path}: '{ext}' cannot store an alpha channel")
    if not 1 <= quality <= 101:
        raise ImageError(f"quality must be in 1-100 (101: lossless WebP), got {quality}")
    metadata = metadata if metadata and (metadata.icc_profile or metadata.exif) else None
    if ext == ".png":  # encoded band by band into the file: never held encoded in memory
        png_stream.write_png(path, image, _png_metadata_chunks(metadata))
        return
    cv2 = opencv()
    if cv2 is None or (metadata and ext in (".jpg", ".jpeg", ".webp")):
        atomic_write_bytes(path, _pillow_encode(image, ext, quality, metadata))
        return
    params: list[int] = []
    if ext in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    elif ext == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, quality]
    with _bgr_order(image) as bgr:
        ok, encoded = cv2.imencode(ext, bgr, params)
    if not ok:
        raise ImageError(f"{path}: encoding failed")
    atomic_write_bytes(path, memoryview(encoded).cast("B"))  # written as it is: no copy of the encoded image


@contextlib.contextmanager
def _bgr_order(image: np.ndarray) -> Iterator[np.ndarray]:
    """``image`` with red and blue swapped, as OpenCV encodes: in place (row band by row band, swapped back on
    exit) when the array is writeable, so that a large output is not copied; a copy otherwise."""
    if image.shape[2] == 1:
        yield image
        return
    if not image.flags.writeable:
        yield image[:, :, [2, 1, 0, 3][: image.shape[2]]]
        return

    def swap() -> None:
        for top in range(0, image.shape[0], 256):
            band = image[top : top + 256]
            band[:, :, [0, 2]] = band[:, :, [2, 0]]

    swap()
    try:
        yield image
    finally:
        swap()


def read_rgb8(path: str | os.PathLike) -> np.ndarray:
    """An image as 8-bit RGB (H, W, 3): grey replicated, alpha dropped, 16-bit reduced (for data and metrics)."""
    image = to_uint8(read_image(path))
    return np.ascontiguousarray(np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[:, :, :3])


def to_float(image: np.ndarray) -> np.ndarray:
    """uint8/uint16 -> float32 in [0, 1]."""
    return image.astype(np.float32) / float(np.iinfo(image.dtype).max)


def from_float(image: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """float in [0, 1] -> uint8/uint16, clipped and rounded."""
    peak = float(np.iinfo(dtype).max)
    scaled = image * np.float32(peak)  # one temporary, then in place: outputs can be gigabytes
    np.rint(scaled, out=scaled)
    np.clip(scaled, 0, peak, out=scaled)
    return scaled.astype(dtype)


def to_uint8(image: np.ndarray) -> np.ndarray:
    return image if image.dtype == np.uint8 else from_float(to_float(image), np.uint8)
