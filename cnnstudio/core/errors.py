"""Errors a user can act on. Their message is shown as is: one line, naming the file and the reason."""


class StudioError(Exception):
    """Base of every error whose message is meant for the user."""


class DatasetError(StudioError):
    """The dataset folder cannot be used (missing, fewer than two classes, ...)."""


class SpecError(StudioError):
    """A model spec is invalid; the message names the field and the reason."""


class BuildError(StudioError):
    """A plugin's ``build`` / ``apply`` failed; the message names the provider and its plugin."""


class WeightsError(StudioError):
    """Pretrained weights cannot be loaded (no internet, a file that does not fit the architecture)."""


class Cancelled(StudioError):
    """The user stopped work before it produced anything (decoding images, computing features)."""


class RecordError(StudioError):
    """A record of a run folder (config, metrics, history, predictions, problems) is missing or
    malformed; the message names the file and what is wrong, with the row of a CSV file."""


class BundleError(StudioError):
    """A model bundle is missing, incomplete or unreadable."""


class ImageError(StudioError):
    """One image cannot be used. ``path`` and ``reason`` are kept apart for tables and JSON."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class ModelFileError(StudioError):
    """A ``.keras`` file is not one the studio loads: not a Keras archive, or it holds a layer or
    function that could run code of the file's choosing (a ``Lambda``, say)."""


class WriteFailed(StudioError, OSError):
    """A file could not be written: ``PATH: no space left on device``, ``PATH: read-only file
    system``, ``PATH: permission denied``. The previous file at ``path`` is left as it was.

    It is an :class:`OSError` too (with ``errno`` and ``strerror``), so a caller for whom a write
    is optional (a cache) keeps treating it as one."""

    def __init__(self, path, reason: str, errno: int | None = None):
        OSError.__init__(self, errno, reason, str(path))
        self.path = str(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"
