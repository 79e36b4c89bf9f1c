"""Batch upscaling on a Ray cluster (``kdsr upscale --ray``, the ``ray`` extra): the run is planned on the driver
as on one machine (names, refusals, ``--skip-existing``), then Ray actors that each hold one loaded model upscale
and write the images, with the same rules as the single-process path (:func:`kdsr.inference.files.upscale_image_file`:
the input's metadata, atomic writes, the alpha rule).

- The model file travels through Ray's object store once (workers need no copy of the driver's paths); images are
  read and written by the workers on paths they share with the driver (a shared filesystem on a real cluster), so no
  image goes through the object store at all, and the IDR stays global per image (tiles inside a worker).
- Ray's own fault tolerance restarts a worker that dies and retries its image; a retry that finds the image's
  output already in place (written by the attempt that died after its atomic rename) leaves it alone, so no output
  is written twice. A bad image fails that image only. A crashed run resumes with ``--skip-existing``.
- A local cluster started for the run is shut down with it (success, failure, Ctrl-C, SIGTERM); a cluster the
  run connected to (``--ray ADDRESS``, or one this process had joined) is left running.
- One actor per GPU where the cluster has GPUs; otherwise ``actors`` CPU actors (default: one per
  ``threads_per_actor`` CPUs of the cluster), each running its network with that many threads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from kdsr.atomic import remove_stale_temporaries
from kdsr.errors import KDSRError
from kdsr.inference.files import BatchResult, ImageJob, failure_message, upscale_image_file
from kdsr.inference.planning import Plan, is_video
from kdsr.inference.settings import UpscaleSettings

#: Ray's restarts of a worker that died, and retries of the image it was working on
MAX_RESTARTS = 3


def ray_module():
    try:
        import ray
    except ImportError:
        raise KDSRError("--ray needs Ray: pip install 'kdsr[ray]'") from None
    return ray


@dataclasses.dataclass(frozen=True)
class WorkerSettings:
    """What each worker builds its upscaler with (:func:`~kdsr.inference.opening.open_upscaler`: the backend
    ``auto`` takes the torch-free path when the worker has the graphs) and how it writes images."""

    upscaler: UpscaleSettings
    job: ImageJob
    threads: int = 1


class UpscaleWorker:
    """One loaded model on a Ray worker; :meth:`run` upscales one image file into its target."""

    def __init__(self, model_bytes: bytes, suffix: str, settings: WorkerSettings) -> None:
        from kdsr.heap import release_large_buffers

        release_large_buffers()
        if settings.threads:
            os.environ["OMP_NUM_THREADS"] = str(settings.threads)
        self.folder = Path(tempfile.mkdtemp(prefix="kdsr-ray-"))
        model_path = self.folder / f"model{suffix}"
        model_path.write_bytes(model_bytes)
        from kdsr.inference.opening import open_upscaler
        from kdsr.inference.settings import torch_installed

        if settings.threads and torch_installed():
            import torch

            torch.set_num_threads(settings.threads)
        self.upscaler = open_upscaler(str(model_path), settings.upscaler)
        self.job = settings.job

    def close(self) -> None:
        """Remove this worker's copy of the model file (the run is over)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def run(self, source: str, target: str) -> tuple[str, str, str]:
        """("written", path, "") or ("failed", source, message); an output that exists already was written by an
        earlier attempt at this image (the plan refused or skipped existing ones) and is reported, not rewritten."""
        path, destination = Path(source), Path(target)
        if destination.exists() and not self.job.overwrite:
            return "written", target, ""
        try:
            return "written", str(upscale_image_file(path, destination, self.upscaler, self.job)), ""
        except (KDSRError, OSError, MemoryError) as e:
            return "failed", source, failure_message(e, path, destination)


def _actor_count(ray, actors: int | None, threads: int) -> tuple[int, int]:
    """(actors, GPUs per actor): one per GPU, else ``actors`` or the cluster's CPUs over ``threads``."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if gpus:
        return actors or gpus, 1
    return actors or max(1, int(resources.get("CPU", 1)) // max(threads, 1)), 0


def upscale_plan_on_ray(
    plan: Plan,
    model_path: Path,
    settings: WorkerSettings,
    address: str | None = None,
    actors: int | None = None,
) -> BatchResult:
    """Upscale the jobs of ``plan`` on the Ray cluster at ``address`` (None: a local cluster on this machine, or
    the one this process is connected to already) with :class:`UpscaleWorker` actors; returns what one machine's
    :func:`~kdsr.inference.files.upscale_files` returns."""
    ray = ray_module()
    if any(is_video(path) for path, _ in plan.jobs):
        raise KDSRError("--ray upscales images; run videos without --ray")
    if ray.is_initialized():  # the caller's connection: theirs to close
        return _run_plan(ray, plan, model_path, settings, actors)
    with _sigterm_as_interrupt() as take_sigterm:
        try:
            ray.init(address=address, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
            take_sigterm()  # ray.init installs its own handler (exit status 15, no message): ours again
            return _run_plan(ray, plan, model_path, settings, actors)
        except SystemExit as e:  # SIGTERM while ray.init ran, under Ray's handler: an interruption all the same
            if e.code == signal.SIGTERM:
                raise KeyboardInterrupt from None
            raise
        finally:  # a local cluster started here goes with the run (success, failure, Ctrl-C, SIGTERM)
            ray.shutdown()


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[Callable[[], None]]:
    """SIGTERM raises KeyboardInterrupt in the main thread while the run lasts, so that the cluster is shut down as
    on Ctrl-C (the default would end the driver at once and leave Ray's processes behind). Yields a function that
    installs the handler again, for after code that replaces it."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    def install() -> None:
        signal.signal(signal.SIGTERM, interrupt)

    previous = signal.getsignal(signal.SIGTERM)
    install()
    try:
        yield install
    finally:
        signal.signal(signal.SIGTERM, previous)


def _remove_temporaries(plan: Plan) -> None:
    for folder in {target.parent for _, target in plan.jobs}:
        remove_stale_temporaries(folder, [target.name for _, target in plan.jobs])


def _run_plan(ray, plan: Plan, model_path: Path, settings: WorkerSettings, actors: int | None) -> BatchResult:
    from ray.util.actor_pool import ActorPool

    count, gpus = _actor_count(ray, actors, settings.threads)
    worker = ray.remote(num_cpus=0 if gpus else settings.threads, num_gpus=gpus, max_restarts=MAX_RESTARTS,
                        max_task_retries=MAX_RESTARTS)(UpscaleWorker)  # fmt: skip
    model_ref = ray.put(model_path.read_bytes())
    workers = [worker.remote(model_ref, model_path.suffix, settings) for _ in range(count)]
    pool = ActorPool(workers)
    result = BatchResult(skipped=list(plan.skipped))
    started = time.perf_counter()
    jobs = [(str(path), str(target)) for path, target in plan.jobs]
    _remove_temporaries(plan)  # what an earlier, killed run left
    try:
        for status, where, message in pool.map(lambda actor, job: actor.run.remote(*job), jobs):  # in plan order
            if status == "written":
                result.written.append(Path(where))
            else:
                result.failed.append((Path(where), message))
    finally:  # best effort: ray.wait, unlike ray.get, does not raise for a dead worker over the run's own error
        ray.wait([w.close.remote() for w in workers], num_returns=count, timeout=30)
        for w in workers:  # the actors end with the run, even one still starting (it would linger for minutes)
            ray.kill(w, no_restart=True)
        _remove_temporaries(plan)  # what a worker killed mid-write left (Ray restarted it and retried the image)
    result.seconds = time.perf_counter() - started
    return result
