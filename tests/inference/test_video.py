"""Video upscaling end to end on clips made with the bundled ffmpeg (the video extra)."""

import subprocess
from fractions import Fraction

import numpy as np
import pytest
import torch

from kdsr import Upscaler
from kdsr.checkpoint import save_model
from kdsr.cli import main
from kdsr.errors import ImageError, KDSRError
from kdsr.inference.files import upscale_files
from tests.conftest import tiny_model

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")

from kdsr.inference.video import _frames, exact_rate, probe_video, upscale_video, video_idr  # noqa: E402


def _ffmpeg(*args):
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", *args], check=True)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """12 frames of 32x24 test pattern at 30000/1001 fps with a 440 Hz tone."""
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    _ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=32x24:rate=30000/1001", "-f", "lavfi", "-i", "sine=frequency=440",
        "-frames:v", "12", "-t", "0.4", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(path),
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def upscaler():
    return Upscaler(tiny_model(), precision="fp32", tile=0)


def test_video_is_upscaled_with_same_rate_count_and_audio(clip, upscaler, tmp_path):
    target = tmp_path / "out.mp4"
    assert upscale_video(clip, target, upscaler) == 12
    info = probe_video(target)
    assert (info.width, info.height, info.frames, info.fps) == (128, 96, 12, Fraction(30000, 1001))
    assert info.has_audio
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_one_idr_per_video_from_frames_spread_over_it(clip, upscaler):
    info = probe_video(clip)
    frames = list(_frames(clip, info))
    assert len(frames) == 12
    expected = torch.cat([upscaler.estimate_idr(frames[i]) for i in (0, 2, 3, 5, 6, 8, 9, 11)]).mean(0, keepdim=True)
    torch.testing.assert_close(video_idr(upscaler, clip, info), expected)
    # a frame upscaled with its own IDR given explicitly equals the plain call
    np.testing.assert_array_equal(upscaler.upscale(frames[4], idr=upscaler.estimate_idr(frames[4])),
                                  upscaler.upscale(frames[4]))  # fmt: skip


def test_interrupted_video_leaves_no_file(clip, tmp_path, monkeypatch):
    calls = []
    model = Upscaler(tiny_model(), precision="fp32", tile=0)
    real = model.upscale

    def upscale_then_stop(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "upscale", upscale_then_stop)
    with pytest.raises(KeyboardInterrupt):
        upscale_video(clip, tmp_path / "out.mp4", model)
    assert list(tmp_path.iterdir()) == []


def test_folder_with_video_image_and_other_files(clip, upscaler, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "clip.mov").write_bytes(clip.read_bytes())
    (folder / "notes.txt").write_text("hello")
    from kdsr.image_io import write_image
    from tests.conftest import synthetic_image

    write_image(folder / "a.png", synthetic_image(16, 16))
    result = upscale_files(folder, tmp_path / "out", upscaler, progress=False)
    assert sorted(p.name for p in result.written) == ["a_out.png", "clip_out.mov"]
    assert [p.name for p, _ in result.skipped] == ["notes.txt"] and not result.failed
    assert result.frames == 12 and "2 written, 1 skipped, 0 failed" in result.summary()


def test_video_limits_and_formats_are_one_line_errors(clip, upscaler, tmp_path, capsys):
    with pytest.raises(ImageError, match="exceed --max-pixels"):
        upscale_video(clip, tmp_path / "o.mp4", upscaler, max_pixels=100)
    with pytest.raises(KDSRError, match="must be one of"):
        upscale_video(clip, tmp_path / "o.gif", upscaler)
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    with pytest.raises(ImageError, match="not a readable video"):
        upscale_video(tmp_path / "broken.mp4", tmp_path / "o.mp4", upscaler)
    assert main(["upscale", "-i", str(clip), "-o", str(tmp_path / "x.png"), "-n", "kdsr-s"]) == 1
    assert "not a video format" in capsys.readouterr().err
    assert not list(tmp_path.glob("o.*"))


@pytest.mark.parametrize("ext, audio", [(".webm", "opus"), (".mkv", "aac")])
def test_other_containers_keep_audio_and_subtitles(clip, tmp_path, ext, audio):
    model = tmp_path / "tiny.safetensors"
    save_model(tiny_model(), model)
    subtitles = tmp_path / "s.srt"
    subtitles.write_text("1\n00:00:00,000 --> 00:00:00,300\nhello\n")
    source = tmp_path / "with-subs.mkv"
    _ffmpeg("-i", str(clip), "-i", str(subtitles), "-map", "0", "-map", "1", "-c", "copy", str(source))
    target = tmp_path / f"out{ext}"
    assert main(["upscale", "-i", str(source), "-o", str(target), "-n", str(model), "-q", "--crf", "30"]) == 0
    header = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(target)], capture_output=True, text=True)
    assert f"Audio: {audio}" in header.stderr and "Subtitle:" in header.stderr
    assert probe_video(target).frames == 12


@pytest.mark.parametrize(
    "fps, rate",
    [(29.97, Fraction(30000, 1001)), (23.976, Fraction(24000, 1001)), (59.94, Fraction(60000, 1001)),
     (25.0, Fraction(25)), (30.0, Fraction(30)), (12.5, Fraction(25, 2))],
)  # fmt: skip
def test_exact_frame_rates(fps, rate):
    assert exact_rate(fps) == rate
