# SPDX-License-Identifier: GPL-2.0-or-later
"""Exception types raised by the engine.

The algorithms translate every one of them into a ``QgsProcessingException``;
the message is written for a GIS user, so it names the file, key or layer at
fault and, where there is one, what to do about it.
"""


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
