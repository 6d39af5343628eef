# SPDX-License-Identifier: GPL-2.0-or-later
"""Exception types raised by the engine.

The algorithms translate every one of them into a ``QgsProcessingException``;
the message is written for a GIS user, so it names the file, key or layer at
fault and, where there is one, what to do about it.
"""

import re


class DLToolsError(Exception):
    """Base class of every error the engine raises on purpose."""


class ModelDefinitionError(DLToolsError):
    """The model definition (.emd, JSON text, .dlpk, model file) is unusable."""


class PackageError(ModelDefinitionError):
    """A deep learning package (.dlpk) is malformed or unsafe to extract."""


class ArgumentError(DLToolsError):
    """A model argument has a wrong name or type."""


class BackendError(DLToolsError):
    """The inference backend could not load or run the model."""


class DependencyMissingError(BackendError):
    """A Python package the backend needs (onnxruntime, torch) is not installed."""


class InputDataError(DLToolsError):
    """The input raster or features do not fit the model or the request."""


class OutputError(DLToolsError):
    """An output file cannot be written."""


class CancelledError(DLToolsError):
    """The user cancelled the run; partial outputs have been removed."""


class InstallError(DLToolsError):
    """pip could not install, upgrade or remove the plugin's inference libraries; the previous state is kept."""


class UntrustedCodeError(BackendError):
    """A model that carries code (TorchScript, torch.export, its own Python) was not trusted by the user.

    ``sha256`` is the file's digest: the dialog offers to trust exactly that file."""

    def __init__(self, message: str, path: str = "", sha256: str = "") -> None:
        super().__init__(message)
        self.path = path
        self.sha256 = sha256

    def __reduce__(self) -> tuple:
        """Pickled whole (a child process sends it to the dialog, which offers to trust ``sha256``)."""
        return (type(self), (str(self), self.path, self.sha256))


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
#: Advice in a library's error text that would be wrong for a plugin user (it would run the file's code).
_LIBRARY_ADVICE = ("add_safe_globals", "weights_only=False", "safe_globals", "Check the documentation of torch.load",
                   "WeightsUnpickler error: Unsupported operand", "In PyTorch 2.6")


def plain_reason(exc: BaseException | str, limit: int = 400) -> str:
    """A runtime's error text fit for the user: no terminal escape codes, no advice to turn off the safety
    (torch's ``weights_only=False``, ``add_safe_globals``), at most ``limit`` characters.  For an error raised inside
    a TorchScript model, the model's own error line, not the interpreter's traceback that comes before it."""
    text = _ANSI.sub("", str(exc))
    unpickler = re.search(r"WeightsUnpickler error: (.*?)(?: was not an allowed global by default| Please use|\n|$)",
                          text)
    if "Weights only load failed" in text and unpickler:  # torch's long advice around a one-line reason
        text = f"the weights-only reader refused it ({unpickler.group(1).strip().rstrip('.')})"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "Traceback of TorchScript" in text:  # the interpreter's traceback first, the model's own error last
        raised = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception): ", line)]
        if raised:
            lines = [raised[-1].removeprefix("builtins.")]
    kept = [line for line in lines if not any(advice in line for advice in _LIBRARY_ADVICE)]
    text = " ".join(kept or lines[:1])
    for advice in _LIBRARY_ADVICE:  # advice within a kept line: cut the line there
        cut = text.find(advice)
        if cut > 0:
            text = text[:cut].rstrip(" .,;:(") + "."
    return text if len(text) <= limit else text[:limit - 1] + "…"


#: The engine's own modules (``dltools.core.``, however the plugin's folder is named).
_ENGINE = __name__.rsplit(".", 1)[0] + "."


class OutOfMemoryError(DLToolsError):
    """The run ran out of memory; the message says in which part, and what to change."""


def memory_advice(exc: BaseException) -> str:
    """What ran out of memory, from where ``exc`` was raised (the innermost frame of this plugin's engine), and
    what to change: detection merges never take advice about batch_size, which they do not use."""
    where = ""
    tb = exc.__traceback__
    while tb is not None:
        name = str(tb.tb_frame.f_globals.get("__name__", ""))
        if name.startswith(_ENGINE):
            where = name
        tb = tb.tb_next
    if ".detection." in where or where.endswith("non_maximum_suppression"):
        return ("Out of memory while merging or suppressing detected objects: the model returned more objects than "
                "fit in memory. Raise the threshold in the model arguments, or check the model")
    if ".raster." in where:
        return "Out of memory while reading or writing the raster: lower block_size in the model arguments"
    return "Out of memory while running the model: lower batch_size in the model arguments, or the tile size"
