"""Errors a person can act on.

Every error raised on purpose by the workbench is a :class:`WorkbenchError`.
Its message says what was wrong (with the offending value) and what to do next,
in plain language, because therapists read these, not programmers.
"""

from __future__ import annotations

__all__ = [
    "AdapterError",
    "AudioError",
    "CorpusError",
    "EmbeddingError",
    "ExportError",
    "MicrophoneError",
    "MissingDependencyError",
    "ModelImportError",
    "ModelSizeError",
    "NotYetSupportedError",
    "ProfileError",
    "PromptError",
    "SynthesisError",
    "TrainingBusyError",
    "TrainingError",
    "ServerError",
    "UsageError",
    "VocabularyError",
    "WireFormatError",
    "WorkbenchError",
]


class WorkbenchError(Exception):
    """Base class: ``str(err)`` is a complete, plain-language message."""


class AudioError(WorkbenchError, ValueError):
    """A recording or audio file cannot be used (empty, silent, corrupt, ...)."""


class AdapterError(WorkbenchError, ValueError):
    """An adapter config, Submodel file or speaker bank cannot be used as asked."""


class CorpusError(WorkbenchError, ValueError):
    """A speaker folder, manifest or speaker id is invalid."""


class MicrophoneError(WorkbenchError, RuntimeError):
    """The kernel's microphone cannot be used; ``str(err)`` says why and what to do.

    Attributes:
        reason: ``"no_sounddevice"``, ``"no_portaudio"``, ``"no_input"`` or ``"device"``.
    """

    def __init__(self, message: str, *, reason: str = "device") -> None:
        super().__init__(message)
        self.reason = reason


class MissingDependencyError(WorkbenchError, ImportError):
    """An optional package or a system program is not installed."""


class ModelImportError(WorkbenchError, ValueError):
    """A base-model folder or weight file cannot be imported (not the format, truncated, wrong hash)."""


class ModelSizeError(WorkbenchError, ValueError):
    """A size of the built-in model (a subnetwork of its supernet) is not one of the valid choices."""


class NotYetSupportedError(WorkbenchError, NotImplementedError):
    """A code path that exists in the interface but is not available yet."""


class TrainingError(WorkbenchError, RuntimeError):
    """Personalization cannot start or continue (too little data, NaN loss, bad checkpoint)."""


class TrainingBusyError(TrainingError):
    """A run for this speaker is already going (the app trains one run per speaker at a time)."""


class ExportError(WorkbenchError, ValueError):
    """A personal model cannot be exported as asked (``workbench export``); ``str(err)`` says why and what to do."""


class EmbeddingError(WorkbenchError, ValueError):
    """Embeddings cannot be computed or compared as asked (wrong source, shapes, too few points)."""


class ProfileError(WorkbenchError, ValueError):
    """A simulated-speaker profile or voice spec is invalid, or the voice cannot do what the profile asks."""


class SynthesisError(WorkbenchError, RuntimeError):
    """A TTS engine failed or timed out while making simulated speech."""


class WireFormatError(WorkbenchError, ValueError):
    """A device message (compressed representation) is damaged, cut off, or from another model."""


class PromptError(WorkbenchError, ValueError):
    """A prompt list cannot be found, is empty, or holds a prompt with no words to score."""


class UsageError(WorkbenchError, ValueError):
    """Command-line flags that do not go together, or a flag value the command cannot use; the message
    names the flags and what to give instead (``workbench`` exits with code 2, as argparse does)."""


class VocabularyError(WorkbenchError, ValueError):
    """A speaker's word list (names and words they use) cannot be read or holds an unusable line."""


class ServerError(WorkbenchError, RuntimeError):
    """A server cannot do what was asked: the app cannot start with these settings (address, password),
    or the clinic's server refused a device's request or could not be reached. The message says what
    to change."""


def __getattr__(name: str) -> type[WorkbenchError]:
    """``ServeError``, the app's former name for :class:`ServerError`, still works for one release (with a
    ``DeprecationWarning``)."""
    if name == "ServeError":
        import warnings

        warnings.warn("workbench.errors.ServeError is now ServerError; ServeError goes in the next release",
                      DeprecationWarning, stacklevel=2)
        return ServerError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
