"""Whisper split between the patient's device and the server.

The device computes Whisper's log-mel of ONE recording in that recording's own encoding window
(the backend's window for its duration: ``window="auto"`` is the audio plus a margin of silence,
rounded up to the bucket; ``"full"`` is 30 s), then runs the convolutional frontend and the
first ``k`` encoder layers (``k = 0``: log-mel only, ``(W, 80)`` at 100 frames per second; else
``(W/2, D)`` at 50 per second) and the compressor. The server restores the states of the whole
window, runs encoder layers ``k ..`` and the decoder with the speaker's Submodel (LoRA in the
server's encoder layers and the decoder).

Why the whole window, silence included: Whisper's encoder has no attention mask, so every
frame of its top layers depends on the window's silence frames, whose states after layer ``k``
depend on the audio. Sending them is what makes the split equal the unsplit model; they are
cheap to code (the compressor learns them).

Why the audio length travels (wire format version 2, ``Message.samples``): the window and the
decoder's length cap (``8 + 7 * seconds`` tokens) follow the recording's duration, and the server
checks that a message's frames are the window's frames for its samples.

>>> from workbench.device_tuning.whisper_split import window_geometry
>>> window_geometry(48_000, split_layer=2, window_frames=lambda mel: 400)  # 3 s, a 4 s window
(200, 150)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import numpy as np
import torch

from workbench.constants import HOP_LENGTH
from workbench.device_tuning.split import SplitModel, _injected
from workbench.device_tuning.wire import Message
from workbench.errors import WireFormatError, WorkbenchError
from workbench.models.base import MAX_TRAIN_S

__all__ = ["WhisperSplit", "window_geometry"]

def window_geometry(samples: int, *, split_layer: int, window_frames: Callable[[int], int]) -> tuple[int, int]:
    """``(frames sent, true frames)`` of a recording of ``samples`` (16 kHz) at split ``k``.

    Frames sent are the whole encoding window: ``W`` mel frames at ``k = 0``, ``W / 2`` encoder
    frames after the frontend; the true frames are the audio's own (what Whisper's backend
    gives as lengths: ``min(mel, W)`` or ``min((mel + 1) // 2, W / 2)``).
    """
    mel = int(samples) // HOP_LENGTH  # 10 ms mel frames
    window = int(window_frames(mel))
    if split_layer == 0:
        return window, min(mel, window)
    return window // 2, min((mel + 1) // 2, window // 2)


class WhisperSplit(SplitModel):
    """A :class:`SplitModel` of a :class:`~workbench.models.whisper.WhisperBackend`; ``k`` from 0
    (the device sends log-mel) to ``num_layers`` (the device runs the whole encoder)."""

    min_split_layer = 0

    @property
    def width(self) -> int:
        """80 log-mel bins at ``k = 0``, else the encoder's width."""
        if self.split_layer == 0:
            return int(self.backend.model.config.num_mel_bins)
        return int(self.backend.hidden_size)

    def geometry(self, samples: int) -> tuple[int, int]:
        """``(frames sent, true frames)`` for ``samples`` of audio on this backend and split."""
        return window_geometry(samples, split_layer=self.split_layer, window_frames=self.backend.window_frames)

    # -- device ---------------------------------------------------------------
    def device_hidden(self, waveforms: Sequence[np.ndarray]) -> list[tuple]:
        """One ``(states (F, width), true frames, samples, k)`` per waveform, each in its own window,
        by the base model (adapters injected into this backend, a bank's or a Trainer's, are off)."""
        with contextlib.ExitStack() as off:
            for other in _injected(self.backend):
                off.enter_context(other.disabled())
            return [self.backend.cache_features([w], frozen_layers=self.split_layer)[0] for w in waveforms]

    def _wire_frames(self, h: torch.Tensor, frames: int, samples: int) -> tuple[torch.Tensor, int, int]:
        return h, int(h.shape[0]), samples  # the whole window, and the audio length (format version 2)

    # -- server ---------------------------------------------------------------
    @property
    def max_frames(self) -> int:
        """Frames of the longest recording a device sends (``MAX_TRAIN_S`` of audio)."""
        return self.geometry(round(MAX_TRAIN_S * self.backend.sample_rate))[0]

    def _check_frames(self, msg: Message) -> None:
        if msg.samples == 0:
            raise WireFormatError(
                "The message does not say how long the recording was (wire format version 1), and this server "
                f"runs a Whisper split ({self.backend.name}), which needs it: update the device app, or send with "
                f"'workbench transcribe --server URL --model {self.backend.name}'.")
        longest = round(MAX_TRAIN_S * self.backend.sample_rate)
        if msg.samples > longest:
            raise WireFormatError(
                f"The message says the recording is {msg.samples / self.backend.sample_rate:.0f} s long; this server "
                f"takes at most {MAX_TRAIN_S:.0f} s per message: send shorter pieces.")
        want = self.geometry(msg.samples)[0]
        if msg.frames != want:
            raise WireFormatError(
                f"The message holds {msg.frames} frames, but {msg.samples / self.backend.sample_rate:.2f} s of audio "
                f"takes {want} in this server's encoding window: the device and the server run {self.backend.name} "
                "with different window settings (or the message was made up). Run the same workbench on both.")

    def _items(self, hidden: Sequence[torch.Tensor], samples: Sequence[int] | None) -> list[tuple]:
        if samples is None or len(samples) != len(hidden):
            raise WorkbenchError("A Whisper split needs each recording's length in samples (Message.samples) to "
                                 "transcribe restored states.")
        items = []
        for h, s in zip(hidden, samples, strict=True):
            frames, true = self.geometry(int(s))
            if int(h.shape[0]) != frames:
                raise WorkbenchError(f"The states hold {h.shape[0]} frames; {int(s)} samples take {frames} at "
                                     f"split {self.split_layer}.")
            items.append((h, true, int(s), self.split_layer))
        return items

    def _transcribe_items(self, items: list[tuple], adapted, rows: Sequence[int] | None) -> list[str]:
        """One pass per window size (Whisper's batches share one window; no padding changes a state)."""
        groups: dict[int, list[int]] = {}
        for i, it in enumerate(items):
            groups.setdefault(int(it[0].shape[0]), []).append(i)
        texts = [""] * len(items)
        for idx in groups.values():
            sub_rows = None if rows is None else [rows[i] for i in idx]
            for i, t in zip(idx, super()._transcribe_items([items[i] for i in idx], adapted, sub_rows), strict=True):
                texts[i] = t
        return texts
