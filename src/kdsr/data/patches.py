"""Random HR patches with flips and transposes, reproducible per sample index.

Sample ``i`` is drawn from a generator seeded with ``(seed, i)``, so a batch depends only on its step (and rank):
data-loader workers, interruption and resumption do not change what the model sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from kdsr.errors import KDSRError
from kdsr.image_io import IMAGE_EXTENSIONS, read_rgb8, visible_files


def load_rgb_folder(folders: list[str | Path]) -> list[np.ndarray]:
    """Every image of the folders as 8-bit RGB (grey replicated, alpha dropped), kept in memory."""
    images = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise KDSRError(f"{folder}: training data folder not found")
        images += [read_rgb8(path) for path in visible_files(folder) if path.suffix.lower() in IMAGE_EXTENSIONS]
    if not images:
        raise KDSRError(f"no training images in {', '.join(map(str, folders))}")
    return images


class HRPatches(Dataset):
    """``patch`` x ``patch`` RGB crops in [0, 1] (C, H, W) with random flips and transposes (8 dihedral variants).

    Images smaller than the patch are reflect-padded first.
    """

    def __init__(self, images: list[np.ndarray], patch: int, seed: int = 0) -> None:
        self.images, self.patch, self.seed = images, patch, seed

    def __len__(self) -> int:  # samples are addressed by a global counter, not by image
        return 2**62

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, index])
        image = self.images[rng.integers(len(self.images))]
        h, w = image.shape[:2]
        if h < self.patch or w < self.patch:
            pad = ((0, max(self.patch - h, 0)), (0, max(self.patch - w, 0)), (0, 0))
            image = np.pad(image, pad, mode="reflect" if min(h, w) > 1 else "edge")
            h, w = image.shape[:2]
        top, left = rng.integers(h - self.patch + 1), rng.integers(w - self.patch + 1)
        crop = image[top : top + self.patch, left : left + self.patch]
        flip_h, flip_v, transpose = rng.random(3) < 0.5
        if flip_h:
            crop = crop[:, ::-1]
        if flip_v:
            crop = crop[::-1]
        if transpose:
            crop = crop.transpose(1, 0, 2)
        return torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))).float().div_(255)


class StepBatchSampler(Sampler[list[int]]):
    """Index lists for steps ``start, start+1, ...``: step s of rank r takes ``B`` consecutive indices starting at
    ``(s * world + r) * B``, so ranks see disjoint samples and a resumed run continues exactly."""

    def __init__(self, batch_size: int, start_step: int = 0, rank: int = 0, world: int = 1) -> None:
        self.batch_size, self.start_step, self.rank, self.world = batch_size, start_step, rank, world

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while True:
            first = (step * self.world + self.rank) * self.batch_size
            yield list(range(first, first + self.batch_size))
            step += 1

    def __len__(self) -> int:
        return 2**62
