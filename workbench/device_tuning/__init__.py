"""Device Tuning: recognition split between the patient's device and the clinic's server.

After Jiang, Hou and Zhou, "Device Tuning for Multi-Task Large Model" (arXiv 2302.10820): the
device runs the first encoder blocks of a frozen base model, a learned compressor turns the
hidden states into a few range-coded bits per frame, and the server runs the rest of the model
with each speaker's Submodel. Raw audio never leaves the device.

Modules:
    wire         the message format (header, speaker id, payload) and its checks
    compressor   the learned bottleneck + quantizer (device) and expander (server); or a linear one
    transform    a linear compressor for Whisper's log-mel fitted in Whisper's own metric (closed form)
    entropy      lossless range coding of the symbols (``constriction``, optional)
    split        the split model: device encode, server restore and transcribe
    whisper_split  the Whisper split (k = 0 .. num_layers; each recording in its own window)
    train        training a compressor (distillation to the unsplit model + CTC)
    whisper_train  training a Whisper split's compressor (token KL + top states; resumable)
    heads        server-side task heads on the same representation (speaker embedding,
                 simulated atypicality: a research output, never a clinical score)
    privacy      what the stream reveals: a speaker-ID probe and an inverse model
    server       the clinic's server on Ray Serve (``workbench serve-asr``)
    client       the device side over HTTP (``workbench transcribe --server URL``)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.device_tuning.compressor import Compressor, CompressorConfig
from workbench.device_tuning.split import SplitModel
from workbench.device_tuning.whisper_split import WhisperSplit
from workbench.device_tuning.wire import Message, check_compatible

if TYPE_CHECKING:
    from workbench.models import ASRBackend

__all__ = ["Compressor", "CompressorConfig", "Message", "SplitModel", "WhisperSplit", "check_compatible", "split_for"]


def split_for(backend: ASRBackend, split_layer: int, compressor: Compressor | None = None) -> SplitModel:
    """The split model for ``backend``: a :class:`~workbench.device_tuning.whisper_split.WhisperSplit`
    for Whisper (a sequence-to-sequence backend), else a :class:`SplitModel`. (Here, above both
    modules: the base split never names its Whisper subclass, so they import no circle.)"""
    if backend.is_seq2seq:
        return WhisperSplit(backend, split_layer, compressor)
    return SplitModel(backend, split_layer, compressor)
