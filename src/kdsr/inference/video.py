"""Upscaling video files: frames streamed from one FFmpeg process through the model into another, one IDR per video.

FFmpeg comes from ``imageio-ffmpeg`` (the ``video`` extra), whose wheels carry a static ffmpeg binary that runs as a
separate process: nothing to compile, no system FFmpeg, and frames travel as raw RGB over pipes, so memory stays
bounded by a few frames whatever the length. Audio and subtitle streams are copied, not re-encoded.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from kdsr.atomic import atomic_path
from kdsr.constants import DEFAULT_CRF, VIDEO_EXTENSIONS
from kdsr.errors import ImageError, KDSRError
from kdsr.inference.layout import MAX_OUTPUT_PIXELS, fit_size
from kdsr.inference.upscaler import Upscaler

#: container -> (ffmpeg muxer, default video codec, audio codec, subtitle codec or None where subtitles cannot be
#: kept); audio is copied except into WebM, which takes Opus/Vorbis only
CONTAINERS = {
    ".mp4": ("mp4", "libx264", "copy", "mov_text"),
    ".mov": ("mov", "libx264", "copy", "mov_text"),
    ".mkv": ("matroska", "libx264", "copy", "copy"),
    ".webm": ("webm", "libvpx-vp9", "libopus", "webvtt"),
    ".avi": ("avi", "libx264", "copy", None),
}
#: frames the video's one IDR is estimated from, spread evenly over it
IDR_SAMPLE_FRAMES = 8


@dataclasses.dataclass(frozen=True)
class VideoSettings:
    """Encoding choices for video outputs: x264/VP9 constant quality (lower is better), codec (None: the
    container's default), and whether each frame gets its own IDR (footage whose degradation changes)."""

    crf: int = DEFAULT_CRF
    codec: str | None = None
    idr_per_frame: bool = False

    @property
    def options(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: Fraction
    frames: int
    has_audio: bool
    has_subtitles: bool


def ffmpeg_exe() -> str:
    try:
        import imageio_ffmpeg
    except ImportError:
        raise KDSRError("video needs imageio-ffmpeg (an FFmpeg build): pip install 'kdsr[video]'") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


def exact_rate(fps: float) -> Fraction:
    """The frame rate as a fraction: NTSC rates (23.976, 29.97, 59.94 ...) as N*1000/1001, others as given."""
    ntsc = Fraction(round(fps * 1.001) * 1000, 1001)
    if abs(fps - round(fps)) > 1e-3 and abs(float(ntsc) - fps) < 5e-3:
        return ntsc
    return Fraction(fps).limit_denominator(1000)


def probe_video(path: Path) -> VideoInfo:
    """Size, frame rate, exact frame count (a decode pass) and which other streams the file has."""
    import imageio_ffmpeg

    exe = ffmpeg_exe()
    header = subprocess.run([exe, "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    video = re.search(r"Stream #\S+.*?: Video: .*?(\d{2,5})x(\d{2,5})", header)
    if video is None:
        raise ImageError(f"{path}: not a readable video")
    try:
        frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
        meta = next(imageio_ffmpeg.read_frames(str(path)))
    except (RuntimeError, OSError, StopIteration) as e:
        raise ImageError(f"{path}: not a readable video ({str(e).splitlines()[0] if str(e) else e})") from None
    width, height = meta["size"]
    if frames < 1 or not meta.get("fps"):
        raise ImageError(f"{path}: no video frames or no frame rate")
    return VideoInfo(
        width=width,
        height=height,
        fps=exact_rate(meta["fps"]),
        frames=frames,
        has_audio=": Audio:" in header,
        has_subtitles=": Subtitle:" in header,
    )


def _frames(path: Path, info: VideoInfo):
    """Decoded frames as (H, W, 3) uint8 arrays, every one (no frame-rate conversion)."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path), output_params=["-fps_mode", "passthrough"])
    next(reader)
    try:
        for data in reader:
            yield np.frombuffer(data, np.uint8).reshape(info.height, info.width, 3)
    finally:
        reader.close()


def video_idr(upscaler: Upscaler, path: Path, info: VideoInfo) -> torch.Tensor:
    """One IDR for the whole video: the mean of the IDRs of frames spread evenly over it (no flicker)."""
    wanted = set(np.linspace(0, info.frames - 1, min(IDR_SAMPLE_FRAMES, info.frames)).round().astype(int).tolist())
    idrs = [upscaler.estimate_idr(frame) for index, frame in enumerate(_frames(path, info)) if index in wanted]
    return torch.cat(idrs).mean(dim=0, keepdim=True)


def output_size(info: VideoInfo, factor: float, width: int | None = None, height: int | None = None) -> tuple[int, int]:
    """Output width and height from the factor, or from ``width``/``height`` (one given: the other follows the
    aspect ratio), rounded down to even numbers (4:2:0 chroma needs them)."""
    w, h = fit_size(info.width, info.height, width, height) or (round(info.width * factor), round(info.height * factor))
    return max(2, w // 2 * 2), max(2, h // 2 * 2)


def upscale_video(
    source: Path,
    target: Path,
    upscaler: Upscaler,
    *,
    outscale: float | None = None,
    crf: int = DEFAULT_CRF,
    codec: str | None = None,
    idr_per_frame: bool = False,
    progress: bool = False,
    max_pixels: int | None = None,
    width: int | None = None,
    height: int | None = None,
) -> int:
    """Upscale ``source`` into ``target`` (written to a temp file, renamed when complete); returns the frame count.
    Same frame rate and count; audio and subtitles copied (subtitles dropped where the container cannot hold them)."""
    source, target = Path(source), Path(target)
    muxer, default_codec, audio_codec, subtitle_codec = CONTAINERS.get(target.suffix.lower(), (None,) * 4)
    if muxer is None:
        raise KDSRError(f"{target}: output video must be one of {', '.join(VIDEO_EXTENSIONS)}")
    info = probe_video(source)
    factor = outscale or upscaler.scale
    width, height = output_size(info, factor, width, height)
    if max_pixels and info.width * info.height > max_pixels:
        raise ImageError(f"{source}: {info.width}x{info.height} frames exceed --max-pixels {max_pixels}")
    if width * height > MAX_OUTPUT_PIXELS:
        raise ImageError(f"{source}: {width}x{height} output frames would be too large")
    idr = None if idr_per_frame else video_idr(upscaler, source, info)
    command = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
    command += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(info.fps), "-i", "-"]
    command += ["-i", str(source), "-map", "0:v:0", "-map", "1:a?"]
    if info.has_subtitles and subtitle_codec:
        command += ["-map", "1:s?", "-c:s", subtitle_codec]
    command += ["-c:v", codec or default_codec, "-crf", str(crf), "-pix_fmt", "yuv420p", "-c:a", audio_codec]
    if (codec or default_codec) == "libvpx-vp9":
        command += ["-b:v", "0"]  # constant quality mode for VP9
    from tqdm import tqdm

    written = 0
    with atomic_path(target) as tmp:
        encoder = subprocess.Popen([*command, "-f", muxer, tmp], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            with tqdm(total=info.frames, desc=source.name, unit="frame", disable=not progress) as bar:
                for frame in _frames(source, info):
                    out = upscaler.upscale(frame, idr=idr, size=(width, height))
                    encoder.stdin.write(memoryview(np.ascontiguousarray(out)).cast("B"))  # no copy of the frame
                    del out  # freed before the next frame's output is allocated: one output frame at a time
                    written += 1
                    bar.update()
            encoder.stdin.close()
            error = encoder.stderr.read().decode(errors="replace").strip()
            if encoder.wait() != 0:
                raise KDSRError(f"{target}: ffmpeg could not write the video ({_last_line(error)})")
        except BrokenPipeError:
            encoder.wait()
            error = encoder.stderr.read().decode(errors="replace").strip()
            raise KDSRError(f"{target}: ffmpeg stopped ({_last_line(error)})") from None
        finally:
            if encoder.poll() is None:
                encoder.kill()
                encoder.wait()
    return written


def _last_line(text: str) -> str:
    return text.splitlines()[-1] if text else "no message"
