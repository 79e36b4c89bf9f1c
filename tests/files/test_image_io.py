"""Image files: bit depth, channels, formats, EXIF orientation, bad files, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from kdsr.errors import ImageError
from kdsr.image_io import apply_exif_orientation, read_image, write_image
from tests.conftest import synthetic_image


@pytest.mark.parametrize(
    "channels, dtype, ext",
    [
        (3, np.uint8, ".png"),
        (1, np.uint8, ".png"),
        (4, np.uint8, ".png"),
        (3, np.uint16, ".png"),
        (1, np.uint16, ".png"),
        (4, np.uint16, ".png"),
        (3, np.uint8, ".bmp"),
        (4, np.uint8, ".webp"),
    ],
)
def test_lossless_round_trip(tmp_path, channels, dtype, ext):
    image = synthetic_image(13, 17, channels, dtype)
    if ext == ".webp":  # lossless only at quality > 100
        path = tmp_path / "a.webp"
        write_image(path, image, quality=101)
    else:
        path = tmp_path / f"a{ext}"
        write_image(path, image)
    back = read_image(path)
    assert back.dtype == dtype and back.shape == image.shape
    np.testing.assert_array_equal(back, image)


def test_channel_order_is_rgb(tmp_path):
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 255
    Image.fromarray(red).save(tmp_path / "red.png")
    assert read_image(tmp_path / "red.png")[0, 0].tolist() == [255, 0, 0]


@pytest.mark.parametrize("ext", [".jpg", ".webp"])
def test_lossy_formats_read_back_close(tmp_path, ext):
    image = synthetic_image(32, 24)
    write_image(tmp_path / f"a{ext}", image)
    back = read_image(tmp_path / f"a{ext}")
    assert back.shape == image.shape and np.abs(back.astype(int) - image).mean() < 6


def test_16bit_to_8bit_format_is_reduced(tmp_path):
    image = synthetic_image(8, 8, 3, np.uint16)
    write_image(tmp_path / "a.jpg", image)
    assert read_image(tmp_path / "a.jpg").dtype == np.uint8


def test_alpha_into_jpeg_is_refused(tmp_path):
    with pytest.raises(ImageError, match="alpha"):
        write_image(tmp_path / "a.jpg", synthetic_image(4, 4, 4))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path, orientation):
    image = synthetic_image(6, 10)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "o.png"
    Image.fromarray(image).save(path, exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)))
    np.testing.assert_array_equal(read_image(path), expected)
    np.testing.assert_array_equal(apply_exif_orientation(image, orientation), expected)


def test_exif_orientation_on_jpeg(tmp_path):
    image = synthetic_image(8, 16)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(image).save(tmp_path / "o.jpg", exif=exif.tobytes(), quality=100)
    assert read_image(tmp_path / "o.jpg").shape == (16, 8, 3)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty file"),
        (b"hello, not an image", "not a readable image"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "not a readable"),
    ],
)
def test_bad_files(tmp_path, content, message):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=message):
        read_image(path)


def test_truncated_png(tmp_path):
    write_image(tmp_path / "a.png", synthetic_image(64, 64))
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError):
        read_image(tmp_path / "cut.png")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageError, match="cannot read"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="cannot read"):
        read_image(tmp_path)


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "out.png"
    write_image(path, synthetic_image(4, 4))
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    import kdsr.atomic

    monkeypatch.setattr(kdsr.atomic.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        write_image(path, synthetic_image(8, 8))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_one_listing_rule_for_folders(tmp_path):
    from kdsr.errors import ImageError
    from kdsr.image_io import list_images, visible_files

    for rel in ("b.png", "a.JPG", ".hidden.png", "notes.txt", "sub/c.png", ".cache/d.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    assert [p.name for p in visible_files(tmp_path)] == ["a.JPG", "b.png", "notes.txt"]
    assert [str(p.relative_to(tmp_path)) for p in visible_files(tmp_path, recursive=True)] == [
        "a.JPG", "b.png", "notes.txt", "sub/c.png"
    ]  # fmt: skip
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png"]
    with pytest.raises(ImageError, match="no images"):
        list_images(_empty(tmp_path))
    with pytest.raises(ImageError, match="not a folder"):
        list_images(tmp_path / "missing")


def _empty(tmp_path):
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


@pytest.mark.parametrize("channels, dtype", [(3, np.uint8), (4, np.uint16), (1, np.uint8), (1, np.uint16)])
def test_png_written_band_by_band_decodes_exactly(tmp_path, channels, dtype):
    import cv2

    from kdsr import png_stream

    g = np.random.default_rng(channels)
    top = 65535 if dtype == np.uint16 else 255
    image = (g.random((150, 41, channels)) * top).astype(dtype)
    image[:70] = image[:70] // 9  # smooth and noisy rows, and bands (of 64 rows, the last one short) of each
    path = tmp_path / "a.png"
    png_stream.write_png(path, image[:, ::-1], band_rows=64)  # a strided view is written as it is
    expected = image[:, ::-1]
    decoded = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    decoded = decoded[:, :, None] if decoded.ndim == 2 else decoded[:, :, [2, 1, 0, 3][:channels]]
    np.testing.assert_array_equal(decoded, expected)
    if dtype == np.uint8:  # a second decoder agrees
        np.testing.assert_array_equal(np.asarray(Image.open(path)).reshape(expected.shape), expected)


def test_png_writer_holds_no_encoded_copy_of_a_large_image(tmp_path):
    import tracemalloc

    image = np.random.default_rng(0).integers(0, 65535, (2048, 1024, 3), dtype=np.uint16)  # 12 MB, incompressible
    tracemalloc.start()
    write_image(tmp_path / "big.png", image)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert (tmp_path / "big.png").stat().st_size > image.nbytes  # noise does not compress
    assert peak < image.nbytes / 4  # one band at a time: never the whole file in memory
