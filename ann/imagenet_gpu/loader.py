"""GpuTrainLoader: DataLoader workers read bytes and plan; the device decodes and augments,
on a side stream on CUDA.

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

from .augment import GpuAugmenter
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


def seed_worker(worker_id: int) -> None:
    """Seed NumPy's generator in a DataLoader worker from the worker's seed, as timm's loader
    does (worker_seeding='all'); torch seeds Python's and its own generator itself."""
    np.random.seed(torch.utils.data.get_worker_info().seed % (2**32 - 1))


_END = object()


class GpuTrainLoader:
    """ImageNet training batches (normalised float32 images, int64 labels) made on `device`.

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
    ) -> None:
        from torch.utils.data import DataLoader, DistributedSampler

        self.device = torch.device(device)
        self.files = PlannedFiles(dataset.reader.samples, augment)
        sampler = DistributedSampler(self.files) if distributed else None
        self.loader = DataLoader(
            self.files,
            batch_size=batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            num_workers=num_workers,
            collate_fn=collate_planned,
            drop_last=True,
            worker_init_fn=seed_worker,
            persistent_workers=num_workers > 0,
        )
        self.sampler = self.loader.sampler
        self.augmenter = GpuAugmenter(augment, self.device)
        self.prefetch = prefetch

    def __len__(self) -> int:
        return len(self.loader)

    def _batch(self, batch: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        data, labels, plans, batchable = batch
        images = self.augmenter(data, plans, batchable)
        return images, labels.to(self.device, non_blocking=True)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.device.type != "cuda":
            for batch in self.loader:
                yield self._batch(batch)
            return
        yield from self._overlapped()

    def _overlapped(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        ready: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        stream = torch.cuda.Stream(device=self.device)

        def produce() -> None:
            try:
                with torch.cuda.device(self.device), torch.cuda.stream(stream):
                    for batch in self.loader:
                        if stop.is_set():
                            break
                        images, labels = self._batch(batch)
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
