# SPDX-License-Identifier: GPL-2.0-or-later
"""Moving batches between numpy and a torch device, and the optional half precision of the model's arithmetic.

On the CPU nothing moves: the numpy batch becomes a tensor sharing its memory, as before this module existed.
On a CUDA device a copy from ordinary (pageable) host memory is staged by the driver and blocks the caller;
from page-locked ("pinned") memory it is a DMA transfer that can run ``non_blocking``. So each batch shape gets a
pinned staging buffer, kept for the next batch of that shape, and the outputs come back into pinned buffers with
non-blocking copies, waited for once per call instead of once per output. Pinned memory is never touched without
CUDA (torch refuses it on a machine without an NVIDIA driver).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

#: batch shapes whose pinned staging buffers are kept (full batches, the last smaller one, a retry)
MAX_SHAPES = 4


class TorchTransfer:
    """Host-to-device and back for one torch device; ``half`` runs the model under CUDA autocast (float16)."""

    def __init__(self, torch: Any, device: Any, half: bool = False) -> None:
        self._torch = torch
        self.device = device
        self.cuda = device.type == "cuda"
        self.half = half and self.cuda
        #: shape -> (pinned host tensor, the CUDA event recorded after its last upload)
        self._staging: OrderedDict[tuple, tuple[Any, Any]] = OrderedDict()

    @property
    def pinned_buffers(self) -> int:
        """How many pinned staging buffers are held (0 on the CPU: none is ever made there)."""
        return len(self._staging)

    def to_device(self, arrays: list[np.ndarray]) -> list[Any]:
        """float32 tensors on the device: shared memory on the CPU; a pinned, non-blocking upload on CUDA."""
        torch = self._torch
        if not self.cuda:
            return [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in arrays]
        return [self._upload(a) for a in arrays]

    def _upload(self, array: np.ndarray) -> Any:
        torch = self._torch
        key = tuple(array.shape)
        staged = self._staging.pop(key, None)
        if staged is None:
            staged = (torch.empty(key, dtype=torch.float32, pin_memory=True), torch.cuda.Event())
        host, uploaded = staged
        uploaded.synchronize()  # the buffer's previous upload has left it (a no-op for a new event)
        host.numpy()[...] = array  # converts to float32 on the way, as np.ascontiguousarray did
        tensor = host.to(self.device, non_blocking=True)
        uploaded.record(torch.cuda.current_stream(self.device))
        self._staging[key] = (host, uploaded)
        while len(self._staging) > MAX_SHAPES:
            self._staging.popitem(last=False)
        return tensor

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """float16 arithmetic where PyTorch's autocast deems it safe (convolutions, matrix products), float32 for
        the rest (reductions, softmax): the usual way to run a float32 network in half precision."""
        if not self.half:
            yield
            return
        with self._torch.autocast(device_type="cuda", dtype=self._torch.float16):
            yield

    def to_host(self, tensors: list[Any]) -> list[np.ndarray]:
        """numpy arrays of the outputs, floating ones as float32 (as the engine expects)."""
        return self.to_host_later(tensors)()

    def to_host_later(self, tensors: list[Any]) -> Callable[[], list[np.ndarray]]:
        """Start copying the outputs back and return what waits for them. On CUDA the copies go, non-blocking,
        into a new pinned buffer per output (torch's pinned-memory cache makes that cheap), so the device can take
        the next batch while they travel and nothing the caller still holds is ever written again."""
        if not self.cuda:
            arrays = [t.detach().float().cpu().numpy() if t.is_floating_point() else t.detach().cpu().numpy()
                      for t in tensors]
            return lambda: arrays
        torch = self._torch
        hosts = []
        for t in tensors:
            host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
            host.copy_(t.detach(), non_blocking=True)
            hosts.append(host)
        done = torch.cuda.Event()
        done.record(torch.cuda.current_stream(self.device))

        def wait() -> list[np.ndarray]:
            done.synchronize()
            return [h.numpy().astype(np.float32) if h.is_floating_point() and h.dtype != torch.float32 else h.numpy()
                    for h in hosts]

        return wait
