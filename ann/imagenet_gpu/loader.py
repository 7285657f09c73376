"""GpuTrainLoader: DataLoader workers read bytes, plan and draw each loader batch's mixup; the
device decodes, augments, mixes and erases, on a side stream on CUDA.

Part of ann.imagenet_gpu, whose docstring describes the whole pipeline."""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from ann.data import ImageNetAugment

from .augment import GpuAugmenter, MixDraw
from .plan import Plan, TimmPlanner

if TYPE_CHECKING:
    from timm.data import ImageDataset


class PlannedFiles(torch.utils.data.Dataset):
    """(file bytes, label, plan, batchable by the JPEG decoder) of each (path, label) sample.

    The planner is built where it is first used (in each worker process), so nothing but the
    sample list and the recipe's augmentation keys is sent to the workers.
    """

    def __init__(self, samples: Sequence[tuple[str | Path, int]], augment: ImageNetAugment) -> None:
        self.samples = list(samples)
        self.augment = augment
        self.planner = TimmPlanner(augment)  # fails here, early, on an unsupported recipe

    def __getstate__(self) -> dict:
        return {"samples": self.samples, "augment": self.augment, "planner": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.planner = TimmPlanner(self.augment)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, Plan, bool]:
        path, label = self.samples[index]
        raw = Path(path).read_bytes()
        with Image.open(io.BytesIO(raw)) as header:  # reads the header only
            plan = self.planner(header)
            batchable = header.format == "JPEG" and header.mode in ("RGB", "L")
        return torch.frombuffer(bytearray(raw), dtype=torch.uint8), int(label), plan, batchable


def collate_planned(items: list) -> tuple[list[torch.Tensor], torch.Tensor, list, list]:
    data, labels, plans, batchable = zip(*items, strict=True)
    return list(data), torch.tensor(labels, dtype=torch.int64), list(plans), list(batchable)


class PlannedCollate:
    """`collate_planned`, and with a timm FastCollateMixup the loader batch's mixup draw and soft
    targets, drawn where and as that collate function draws them (so the random streams stay
    timm's); the device applies the draw (GpuAugmenter)."""

    def __init__(self, mixup: object | None = None, input_size: int = 224) -> None:
        if mixup is not None and mixup.mode != "batch":
            raise ValueError(f"mixup mode '{mixup.mode}' is not implemented; only 'batch' is.")
        self.mixup = mixup
        self.input_size = input_size

    def __call__(self, items: list) -> tuple:
        data, labels, plans, batchable = collate_planned(items)
        if self.mixup is None:
            return data, labels, plans, batchable, None
        from timm.data.mixup import cutmix_bbox_and_lam, mixup_target

        mixup, box = self.mixup, None
        lam, use_cutmix = mixup._params_per_batch()  # the draws of _mix_batch_collate
        if use_cutmix:
            shape = (len(items), 3, self.input_size, self.input_size)
            corners, lam = cutmix_bbox_and_lam(
                shape, lam, ratio_minmax=mixup.cutmix_minmax, correct_lam=mixup.correct_lam
            )
            box = tuple(int(value) for value in corners)
        targets = mixup_target(labels, mixup.num_classes, lam, mixup.label_smoothing)
        return data, targets, plans, batchable, MixDraw(float(lam), box)


def seed_worker(worker_id: int) -> None:
    """Seed NumPy's generator in a DataLoader worker from the worker's seed, as timm's loader
    does (worker_seeding='all'); torch seeds Python's and its own generator itself."""
    np.random.seed(torch.utils.data.get_worker_info().seed % (2**32 - 1))


_END = object()


class GpuTrainLoader:
    """ImageNet training batches (normalised float32 images; int64 labels, or with `mixup` soft
    targets) made on `device`.

    The DataLoader's batches are timm's loader batches of `chunk` images (None: batch_size):
    each is planned and, with `mixup` (a timm FastCollateMixup), its mixup drawn in the
    workers; `batch_size // chunk` of them make one batch, which the device decodes, augments,
    mixes and erases chunk by chunk, as timm's prefetching loader does each loader batch.
    Iterating gives `len(self)` batches of `batch_size` (the last partial batch is dropped, as
    in timm's training loader). With distributed=True the sampler is a DistributedSampler:
    call `self.sampler.set_epoch(epoch)` each epoch. On CUDA the next batch is prepared on a
    side stream in a background thread while the caller works on the current one.
    """

    def __init__(
        self,
        dataset: ImageDataset,
        augment: ImageNetAugment,
        *,
        batch_size: int,
        num_workers: int,
        device: torch.device | str,
        distributed: bool = False,
        prefetch: int = 2,
        chunk: int | None = None,
        mixup: object | None = None,
    ) -> None:
        from torch.utils.data import DataLoader, DistributedSampler

        self.chunk = chunk or batch_size
        if batch_size % self.chunk:
            raise ValueError(f"batch_size {batch_size} is not a multiple of chunk {self.chunk}.")
        self.per_batch = batch_size // self.chunk
        self.device = torch.device(device)
        self.files = PlannedFiles(dataset.reader.samples, augment)
        sampler = DistributedSampler(self.files) if distributed else None
        self.loader = DataLoader(
            self.files,
            batch_size=self.chunk,
            shuffle=sampler is None,
            sampler=sampler,
            num_workers=num_workers,
            collate_fn=PlannedCollate(mixup, augment.input_size),
            drop_last=True,
            worker_init_fn=seed_worker,
            persistent_workers=num_workers > 0,
        )
        self.sampler = self.loader.sampler
        self.augmenter = GpuAugmenter(augment, self.device)
        self.prefetch = prefetch

    def __len__(self) -> int:
        return len(self.loader) // self.per_batch

    def _groups(self) -> Iterator[list[tuple]]:
        """The DataLoader's batches, per_batch at a time (a last partial group is dropped)."""
        group: list[tuple] = []
        for batch in self.loader:
            group.append(batch)
            if len(group) == self.per_batch:
                yield group
                group = []

    def _batch(self, group: list[tuple]) -> tuple[torch.Tensor, torch.Tensor]:
        data, labels, plans, batchable, draws = zip(*group, strict=True)
        images = self.augmenter(
            [item for part in data for item in part],
            [plan for part in plans for plan in part],
            [flag for part in batchable for flag in part],
            chunk=self.chunk,
            draws=None if draws[0] is None else draws,
        )
        return images, torch.cat(labels).to(self.device, non_blocking=True)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.device.type != "cuda":
            for group in self._groups():
                yield self._batch(group)
            return
        yield from self._overlapped()

    def _overlapped(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        ready: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        stream = torch.cuda.Stream(device=self.device)

        def produce() -> None:
            try:
                with torch.cuda.device(self.device), torch.cuda.stream(stream):
                    for group in self._groups():
                        if stop.is_set():
                            break
                        images, labels = self._batch(group)
                        done = torch.cuda.Event()
                        done.record(stream)
                        ready.put((images, labels, done))
            except BaseException as error:  # handed to the consumer
                ready.put(error)
            finally:
                ready.put(_END)

        worker = threading.Thread(target=produce, name="imagenet-gpu-batches", daemon=True)
        worker.start()
        try:
            while (item := ready.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                images, labels, done = item
                consumer = torch.cuda.current_stream(self.device)
                consumer.wait_event(done)
                images.record_stream(consumer)  # freed blocks wait for the consumer's work
                labels.record_stream(consumer)
                yield images, labels
        finally:
            stop.set()
            while worker.is_alive():
                try:
                    ready.get(timeout=0.1)
                except queue.Empty:
                    pass
            worker.join()
