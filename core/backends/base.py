# SPDX-License-Identifier: GPL-2.0-or-later
"""The backend interface: load, describe inputs/outputs, run a batch, release."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import BackendError, CancelledError, plain_reason


@dataclass
class TensorInfo:
    """A model input or output: its name, shape (None where dynamic) and element type."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str
    #: the shape as the model file declares it, names of dynamic axes kept (("batch", 3, 16, 16)), where known
    declared: tuple | None = field(default=None, compare=False)

    def shape_text(self) -> str:
        return "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]"

    def declared_text(self) -> str:
        """The declared shape for messages (``['batch', 3, 16, 16]``), else :meth:`shape_text`."""
        return str(list(self.declared)) if self.declared is not None else self.shape_text()


@dataclass
class DeviceRequest:
    """The ArcGIS "processor type" and "GPU ID" environments: auto, cpu or gpu."""

    kind: str = "auto"  # "auto", "cpu", "gpu"
    gpu_id: int = 0
    threads: int = 0  # 0 = all cores
    #: the ``half_precision`` argument: float16 on a CUDA device (torch autocast; ONNX Runtime only for a model
    #: that is float16 already); refused on the CPU (:func:`refuse_half_on_cpu`)
    half: bool = False

    def __post_init__(self) -> None:
        self.kind = self.kind.lower()
        if self.kind not in ("auto", "cpu", "gpu"):
            raise BackendError(f"Device must be Auto, CPU or GPU, not '{self.kind}'")
        if self.gpu_id < 0:
            raise BackendError(f"GPU id must be 0 or more, not {self.gpu_id}")

    def take_arguments(self, args: dict) -> DeviceRequest:
        """The run's ``threads`` and ``half_precision`` arguments, which are device settings: the argument wins
        where given, else what the caller set stays."""
        self.threads = int(args.get("threads") or self.threads or 0)
        self.half = bool(args.get("half_precision")) or self.half
        return self


def refuse_half_on_cpu(device: DeviceRequest, runs_on: str) -> None:
    """Half precision is a GPU setting: on the CPU it is slower than float32 (no float16 arithmetic in the cores
    this runs on) and less exact, so asking for it there is a mistake to say, not a wish to ignore silently."""
    if device.half and not runs_on.startswith("cuda"):
        why = "the CPU was chosen" if device.kind == "cpu" else "no GPU is reachable here"
        raise BackendError(f"Argument 'half_precision' asks for float16 on a GPU, but the model runs on the CPU "
                           f"({why}), where half precision is slower and less exact: set half_precision to false, "
                           "or run on a GPU")


class Deferred:
    """A model call's outputs, possibly still on their way back from the device: :meth:`result` waits for them.

    Why: on CUDA the copy back of one batch can run while the engine's model thread already starts the next one;
    whoever needs the numbers (the engine's writer thread) waits, not the model thread. Everywhere else the outputs
    are there already and :meth:`result` just returns them.
    """

    def __init__(self, wait: Callable[[], Any]) -> None:
        self._wait = wait

    @classmethod
    def done(cls, value: Any) -> Deferred:
        return cls(lambda: value)

    def then(self, step: Callable[[Any], Any]) -> Deferred:
        """The same call's outputs passed through ``step`` once they are there."""
        return Deferred(lambda: step(self.result()))

    def result(self) -> Any:
        return self._wait()


class Backend:
    """Runs a model on NCHW float32 batches and returns numpy arrays.

    Subclasses implement ``_run`` for a batch whose size the model accepts;
    :meth:`run` splits or zero-pads batches to respect a fixed batch dimension
    and accumulates the time spent inside the model in :attr:`model_seconds`.
    """

    kind = "base"

    def __init__(self) -> None:
        self.inputs: list[TensorInfo] = []
        self.outputs: list[TensorInfo] = []
        self.device = "cpu"
        self.provider = ""
        self.model_seconds = 0.0
        self.calls = 0
        #: what the user should know about how the model runs (the provider that ran and why, half precision);
        #: open_backend logs each line
        self.notes: list[str] = []
        #: the same for what did not happen as asked (half precision a float32 ONNX model cannot give): warnings
        self.warnings: list[str] = []

    @property
    def fixed_batch(self) -> int | None:
        """The batch size the model insists on, or None if it takes any."""
        if not self.inputs or not self.inputs[0].shape:
            return None
        first = self.inputs[0].shape[0]
        return first if isinstance(first, int) and first > 0 else None

    def describe(self) -> str:
        return f"{self.kind} on {self.device} ({self.provider})"

    def run(self, batch: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run one batch (or one array per model input); returns every output, batch first."""
        return self._batched(batch, self._run)

    def use_class_indices(self, output: int, axis: int, rank: int, channels: int, suppressed: Sequence[int] = (),
                          threads: int = 0, keep: tuple[int, int, int, int] | None = None) -> bool:
        """Ask the backend to return class indices of output ``output`` (``channels`` class scores on ``axis``, the
        ``suppressed`` ones never winning) from :meth:`run_class_indices`, computed inside the model's runtime, on
        ``threads`` CPU threads where it decides that (0: as now), of the ``keep`` rows and columns of each tile
        only (see :func:`.onnx_class_index.with_class_indices`).  False where it cannot (the caller then decodes
        the scores itself); :meth:`run` is unchanged either way."""
        return False

    def run_class_indices(self, batch: np.ndarray | Sequence[np.ndarray]) -> np.ndarray | None:
        """After :meth:`use_class_indices` said yes: the arg-max ``[B, h, w]`` of one batch, or None when a score of
        the batch was NaN or infinite (the caller then runs :meth:`run` and decodes the scores as without it)."""
        indices, total = self._batched(batch, self._run_indices)
        return indices if bool(np.isfinite(total).all()) else None

    def _run_indices(self, arrays: list[np.ndarray]) -> list[np.ndarray]:  # pragma: no cover - see above
        raise NotImplementedError

    def _batched(self, batch: np.ndarray | Sequence[np.ndarray],
                 call: Callable[[list[np.ndarray]], list[np.ndarray]]) -> list[np.ndarray]:
        """``call`` on a batch the model accepts: split into (or zero-padded to) a fixed batch dimension."""
        arrays = [batch] if isinstance(batch, np.ndarray) else list(batch)
        if len(arrays) != len(self.inputs):
            raise BackendError(f"The model has {len(self.inputs)} inputs but {len(arrays)} arrays were given")
        n = arrays[0].shape[0]
        fixed = self.fixed_batch
        if fixed is None or fixed == n:
            return self._timed(arrays, call)
        pieces: list[list[np.ndarray]] = []
        for start in range(0, n, fixed):
            part = [a[start:start + fixed] for a in arrays]
            got = part[0].shape[0]
            if got < fixed:
                part = [np.concatenate([p, np.zeros((fixed - got,) + p.shape[1:], p.dtype)]) for p in part]
            outs = self._timed(part, call)
            pieces.append([o[:got] if o.ndim else o.reshape(1) for o in outs])
        return [np.concatenate([p[i] for p in pieces]) for i in range(len(pieces[0]))]

    def run_deferred(self, batch: np.ndarray | Sequence[np.ndarray]) -> Deferred:
        """:meth:`run`, with the outputs as a :class:`Deferred`: a backend that can return before its outputs are
        on the host (PyTorch on CUDA) overrides it; here the call is finished when this returns."""
        return Deferred.done(self.run(batch))

    def _timed(self, arrays: list[np.ndarray], call: Callable[[list[np.ndarray]], list[np.ndarray]]) -> list[np.ndarray]:
        start = time.perf_counter()
        try:
            with model_call():
                out = call(arrays)
        except (BackendError, CancelledError):
            raise
        except Exception as exc:  # the frameworks raise many types; give the user one clear message
            shapes = ", ".join(str(tuple(a.shape)) for a in arrays)
            expected = ", ".join(i.shape_text() for i in self.inputs)
            raise BackendError(f"The model failed on input of shape {shapes} (it expects {expected}): "
                               f"{plain_reason(exc)}") from exc
        self.model_seconds += time.perf_counter() - start
        self.calls += 1
        return out

    def run_structured(self, arrays: list[np.ndarray]):  # noqa: ANN201 - list of arrays here; nested for torch
        """Every output of one batch as the model returns it (torch keeps lists and dicts; ONNX: a list)."""
        return self.run(arrays)

    def _run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        """Release the session/module (and GPU memory)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: Told when a model call starts (True) and ends (False): a child process reports it to the parent, whose time
#: limit per model call needs to know (core.runner). None in-process: nothing to tell.
_CALL_OBSERVER: Callable[[bool], None] | None = None


def observe_model_calls(observer: Callable[[bool], None] | None) -> None:
    """Set (or clear, with None) the process-wide observer of model calls."""
    global _CALL_OBSERVER
    _CALL_OBSERVER = observer


@contextlib.contextmanager
def model_call() -> Iterator[None]:
    """Around one call into the model's runtime: tells the observer, if there is one."""
    observer = _CALL_OBSERVER
    if observer is None:
        yield
        return
    observer(True)
    try:
        yield
    finally:
        observer(False)
