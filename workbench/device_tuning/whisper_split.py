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

Why the silence costs (almost) nothing: the server knows which symbol frames are padding (from
the audio length), so the device codes them adaptively (wire format version 3,
:mod:`workbench.device_tuning.padding`): lossless, and a repeated symbol costs a small fraction of
a bit. On the real prompts the window is about twice the audio, so this about halves a message.

At ``k = 0`` the silence costs 32 bits (wire format version 4): the device sends log-mel, whose
silence after the audio is one constant (the floor, which Whisper's feature extractor sets 2 below
the loudest value), so the compressor codes only the audio's frames, relative to the floor, and
the server rebuilds the rest from the floor exactly. The server's encoder then reads the same
silence as the unsplit model's.

Which window: a Submodel is decoded on the window it was trained on (its file's ``window``,
``"auto"`` or ``"full"``), so the device must encode that window. The server says which one
each speaker needs (:meth:`WhisperSplit.window_for`, in its GET answer as ``window`` and
``windows``); :class:`~workbench.device_tuning.client.DeviceClient` reads it and encodes that window,
and a message in another window is refused with a message that names both.

>>> from workbench.device_tuning.whisper_split import window_geometry
>>> window_geometry(48_000, split_layer=2, window_frames=lambda mel: 400)  # 3 s, a 4 s window
(200, 150)
"""

from __future__ import annotations

import contextlib
import math
import struct
from collections.abc import Callable, Sequence

import numpy as np
import torch

from workbench.constants import HOP_LENGTH
from workbench.device_tuning.entropy import decode_symbols, encode_symbols, payload_bounds
from workbench.device_tuning.padding import decode_padded, encode_padded
from workbench.device_tuning.split import SplitModel, _injected
from workbench.device_tuning.wire import FLOOR_BYTES, Message
from workbench.errors import WireFormatError, WorkbenchError
from workbench.models.base import MAX_TRAIN_S, CachedFeatures

__all__ = ["STFT_HALF_WINDOW", "WhisperSplit", "coded_frames", "true_frames", "window_geometry"]

WINDOW_NAMES = {"auto": "the audio plus a margin ('auto')", "full": "Whisper's 30 s window ('full')"}

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


LOG_MEL_SPAN = 2.0  # Whisper's log-mel lies within 2 above its window's floor (it clamps at max - 8 in log10, / 4)
STFT_HALF_WINDOW = 200  # samples: half of Whisper's 400-sample STFT window (every released size), centred on a frame


def coded_frames(samples: int, frames: int) -> int:
    """At ``k = 0``: the log-mel frames of a window of ``frames`` that the compressor codes, those
    whose STFT window reaches the audio: ``min(W, ceil((samples + 200) / 160))``, two or three
    after the audio's ``samples // 160``. Every later frame is the window's silence, which
    Whisper's feature extractor makes one constant (the floor: the log-mel's maximum minus 2, at
    least -1.5), so the server rebuilds it exactly from that one number.

    >>> coded_frames(16_000, 3000), coded_frames(16_130, 3000)  # 100 frames; the last 10 samples reach a third
    (102, 103)
    """
    return min(int(frames), -(-(int(samples) + STFT_HALF_WINDOW) // HOP_LENGTH))


def silence_floor(h: torch.Tensor) -> torch.Tensor:
    """The floor of log-mel windows ``(B, W, 80)``: ``(B, 1, 1)``, the smallest value of each (every
    value is clamped at it, and the silence after the audio equals it)."""
    return h.amin(dim=(1, 2), keepdim=True)


def true_frames(samples: int, frames: int, split_layer: int) -> int:
    """The audio's own frames among ``frames`` sent (whatever the window): ``min(mel, W)`` at
    ``k = 0``, else ``min((mel + 1) // 2, W / 2)``."""
    mel = int(samples) // HOP_LENGTH
    return min(mel, int(frames)) if split_layer == 0 else min((mel + 1) // 2, int(frames))


class WhisperSplit(SplitModel):
    """A :class:`SplitModel` of a :class:`~workbench.models.whisper.backend.WhisperBackend`; ``k`` from 0
    (the device sends log-mel) to ``num_layers`` (the device runs the whole encoder).

    Attributes:
        window: the window the device encodes (``"auto"``/``"full"``; None: the backend's).
        speaker_windows: server side, the window of each speaker whose Submodel was trained on
            another window than the backend's (:meth:`window_for`).
    """

    min_split_layer = 0

    def __init__(self, backend, split_layer: int, compressor=None) -> None:
        super().__init__(backend, split_layer, compressor)
        self.window: str | None = None
        self.speaker_windows: dict[str, str] = {}

    def window_for(self, speaker: str) -> str:
        """The window a message of ``speaker`` must be encoded in: their Submodel's, else the backend's."""
        return self.speaker_windows.get(speaker) or self.backend.window

    @property
    def width(self) -> int:
        """80 log-mel bins at ``k = 0``, else the encoder's width."""
        if self.split_layer == 0:
            return int(self.backend.model.config.num_mel_bins)
        return int(self.backend.hidden_size)

    def geometry(self, samples: int, window: str | None = None) -> tuple[int, int]:
        """``(frames sent, true frames)`` for ``samples`` of audio on this backend and split, in
        ``window`` (None: :attr:`window`, else the backend's)."""
        name = window or self.window or self.backend.window
        return window_geometry(samples, split_layer=self.split_layer,
                               window_frames=lambda mel: self.backend.window_frames(mel, name))

    @property
    def rebuilds_silence(self) -> bool:
        """At ``k = 0`` the compressor codes the audio's log-mel relative to its floor and the server
        rebuilds the window's silence exactly (wire format version 4); above, the whole window
        of states is coded (version 3)."""
        return self.split_layer == 0

    def round_trip(self, fn: Callable[..., torch.Tensor], h: torch.Tensor,
                   samples: Sequence[int]) -> torch.Tensor:
        """What the server restores from device states ``h (B, F, width)`` of recordings of
        ``samples``, with ``fn(h, valid)`` the compressor's round trip (``compressor`` itself:
        quantized, straight-through; ``compressor.unrounded``: without the rounding). At ``k = 0``
        ``fn`` sees log-mel minus its floor and only the coded frames (:func:`coded_frames`) are
        taken from it (``valid``: their symbol frames, the only ones the server expands), clamped to
        the range Whisper's log-mel has (``[0, LOG_MEL_SPAN]`` above the floor): the silence after
        them is the floor, exactly."""
        if not self.rebuilds_silence:
            return fn(h)
        floor, coded, valid = self._coded(h, samples)
        out = fn(h - floor, valid).clamp(0, LOG_MEL_SPAN) + floor
        keep = torch.arange(h.shape[1], device=h.device)[None, :, None] < coded[:, None, None]
        return torch.where(keep, out, floor.expand_as(h))  # the server's silence, whatever h holds there

    def compressor_input(self, h: torch.Tensor, samples: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What the compressor codes of device states ``h (B, F, width)`` of recordings of ``samples``:
        ``(x (B, F, width), valid)``; at ``k = 0`` the log-mel minus its floor and ``valid (B,)`` the
        symbol frames sent (those of the coded frames: :func:`coded_frames`); above, ``(h, None)``
        (every frame is sent). :meth:`round_trip` and the trainer's rate term read the same frames."""
        if not self.rebuilds_silence:
            return h, None
        floor, _, valid = self._coded(h, samples)
        return h - floor, valid

    def _coded(self, h: torch.Tensor, samples: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(floor (B, 1, 1), coded frames (B,), their symbol frames (B,))`` of log-mel windows ``h``."""
        stride = self._need_compressor().config.stride
        coded = torch.tensor([coded_frames(s, h.shape[1]) for s in samples], device=h.device)
        return silence_floor(h), coded, torch.div(coded + stride - 1, stride, rounding_mode="floor")

    def coded_symbols(self, h: torch.Tensor, samples: int) -> torch.Tensor:
        """The symbols ``(S, dims)`` of one recording's device states ``h (F, width)`` that go on
        the wire: every symbol frame above ``k = 0``; at ``k = 0`` those of the coded frames of
        log-mel minus its floor (:meth:`round_trip`)."""
        if not self.rebuilds_silence:
            return super().coded_symbols(h, samples)
        c = self._need_compressor()
        n = coded_frames(samples, h.shape[0])
        return c.encode((h[None] - silence_floor(h[None])).float())[0, : -(-n // c.config.stride)]

    # -- device ---------------------------------------------------------------
    def device_hidden(self, waveforms: Sequence[np.ndarray], window: str | None = None) -> list[CachedFeatures]:
        """Per waveform its states ``(F, width)`` (:class:`~workbench.models.base.CachedFeatures`:
        ``length`` its true frames, ``start_layer = k``), each in its own window
        (``window``, else :attr:`window`, else the backend's), by the base model (adapters injected
        into this backend, a bank's or a Trainer's, are off)."""
        name = window or self.window or self.backend.window
        with contextlib.ExitStack() as off:
            for other in _injected(self.backend):
                off.enter_context(other.disabled())
            return [self.backend.cache_features([w], frozen_layers=self.split_layer, window=name)[0]
                    for w in waveforms]

    def encode(self, waveforms: Sequence[np.ndarray], speaker: str = "", window: str | None = None) -> list[Message]:
        """Device side: waveforms -> one wire message each, in ``window`` (the one the server names
        for ``speaker``: :meth:`window_for`, ``DeviceClient`` asks it)."""
        saved, self.window = self.window, window or self.window
        try:
            return super().encode(waveforms, speaker)
        finally:
            self.window = saved

    def _wire_frames(self, h: torch.Tensor, frames: int, samples: int) -> tuple[torch.Tensor, int, int]:
        return h, int(h.shape[0]), samples  # the whole window, and the audio length (format version 2+)

    def _payload(self, h: torch.Tensor, tables: np.ndarray, frames: int, samples: int) -> tuple[bytes, dict]:
        symbols = self.coded_symbols(h, samples).cpu().numpy()
        if self.rebuilds_silence:  # format version 4: the floor, then the audio frames' symbols
            floor = struct.pack("<f", float(silence_floor(h[None])))
            return floor + encode_symbols(symbols, tables), {"silence_rebuilt": True}
        stride = self._need_compressor().config.stride
        true_sym = -(-true_frames(samples, frames, self.split_layer) // stride)
        return encode_padded(symbols, tables, true_sym), {"padding_coded": True}  # format version 3

    def max_payload_bytes(self, symbol_frames: int) -> int:
        """Version 4: the floor and the coded frames (fixed tables); version 3: every frame may be
        padding (its adaptive code's worst case)."""
        tables = self._need_compressor().tables.cpu().numpy()
        if self.rebuilds_silence:
            return FLOOR_BYTES + payload_bounds(tables, symbol_frames)[1]
        return payload_bounds(tables, 0, symbol_frames)[1]

    def _decode_payload(self, msg: Message, tables: np.ndarray) -> np.ndarray:
        if msg.silence_rebuilt != self.rebuilds_silence:
            raise WireFormatError(
                f"The message is format version {msg.version}, but this server's split at layer {self.split_layer} "
                f"reads version {4 if self.rebuilds_silence else 3}: the device app is older or newer than the "
                f"server. Send with 'workbench transcribe --server URL --model {self.backend.name}' of the same "
                "workbench as the server.")
        if msg.silence_rebuilt:
            self._floor(msg)  # checked here, before the message joins a batch
            coded = coded_frames(msg.samples, msg.frames)
            return decode_symbols(msg.payload[FLOOR_BYTES:], tables, frames=-(-coded // msg.stride))
        if not msg.padding_coded:  # version 2: fixed tables throughout
            return decode_symbols(msg.payload, tables, frames=msg.symbol_frames)
        true_sym = -(-true_frames(msg.samples, msg.frames, self.split_layer) // msg.stride)
        return decode_padded(msg.payload, tables, frames=msg.symbol_frames, true_frames=true_sym)

    @staticmethod
    def _floor(msg: Message) -> float:
        """A version-4 message's silence floor, checked: Whisper's log-mel floor is at least -1.5
        (silence) and its loudest frame 2 above it, so a floor above 1.5 is no recording's."""
        (floor,) = struct.unpack_from("<f", msg.payload)
        if not math.isfinite(floor) or not -1.5 <= floor <= 1.5:
            raise WireFormatError(f"The message's silence floor is {floor}, which no recording has (Whisper's is "
                                  "-1.5 to 1.5): the message was damaged or made up. Send it again.")
        return floor

    def hidden(self, symbols: np.ndarray, msg: Message) -> torch.Tensor:
        """Server side: a message's symbols -> states ``(N, width)``; at ``k = 0`` the coded frames
        (clamped to ``[0, LOG_MEL_SPAN]``) plus the floor, and the window's silence after them
        rebuilt from the floor."""
        if not self.rebuilds_silence:
            return super().hidden(symbols, msg)
        c, floor = self._need_compressor(), self._floor(msg)
        coded = coded_frames(msg.samples, msg.frames)
        out = torch.full((msg.frames, self.width), floor)
        with torch.no_grad():
            out[:coded] = c.decode(torch.from_numpy(np.asarray(symbols))[None], coded)[0].clamp(0, LOG_MEL_SPAN) + floor
        return out

    # -- server ---------------------------------------------------------------
    @property
    def max_frames(self) -> int:
        """Frames of the longest recording a device sends (``MAX_TRAIN_S`` of audio)."""
        return max(self.geometry(round(MAX_TRAIN_S * self.backend.sample_rate), w)[0] for w in WINDOW_NAMES)

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
        window = self.window_for(msg.speaker)
        want = self.geometry(msg.samples, window)[0]
        other = "full" if window == "auto" else "auto"
        if msg.frames != want and msg.frames == self.geometry(msg.samples, other)[0]:
            whose = (f"speaker {msg.speaker!r}'s Submodel was trained on" if msg.speaker in self.speaker_windows
                     else "this server decodes on")
            raise WireFormatError(
                f"The message was encoded in {WINDOW_NAMES[other]}, but {whose} {WINDOW_NAMES[window]}: the device "
                f"must encode the same window. The device app asks the server which window each speaker needs "
                f"(GET on the server's address, 'windows'): update it, or send with 'workbench transcribe --server "
                f"URL --model {self.backend.name}'.")
        if msg.frames != want:
            raise WireFormatError(
                f"The message holds {msg.frames} frames, but {msg.samples / self.backend.sample_rate:.2f} s of audio "
                f"takes {want} in this server's encoding window: the device and the server run {self.backend.name} "
                "with different window settings (or the message was made up). Run the same workbench on both.")

    def _items(self, hidden: Sequence[torch.Tensor], samples: Sequence[int] | None) -> list[CachedFeatures]:
        if samples is None or len(samples) != len(hidden):
            raise WorkbenchError("A Whisper split needs each recording's length in samples (Message.samples) to "
                                 "transcribe restored states.")
        items = []
        for h, s in zip(hidden, samples, strict=True):
            sizes = {self.geometry(int(s), w)[0] for w in WINDOW_NAMES}
            if int(h.shape[0]) not in sizes:
                raise WorkbenchError(f"The states hold {h.shape[0]} frames; {int(s)} samples take "
                                     f"{' or '.join(map(str, sorted(sizes)))} at split {self.split_layer}.")
            items.append(CachedFeatures(h, true_frames(int(s), int(h.shape[0]), self.split_layer), int(s),
                                        self.split_layer))
        return items

    def _transcribe_items(self, items: list[CachedFeatures], adapted, rows: Sequence[int] | None) -> list[str]:
        """One pass per window size (Whisper's batches share one window; no padding changes a state)."""
        groups: dict[int, list[int]] = {}
        for i, it in enumerate(items):
            groups.setdefault(int(it.features.shape[0]), []).append(i)
        texts = [""] * len(items)
        for idx in groups.values():
            sub_rows = None if rows is None else [rows[i] for i in idx]
            for i, t in zip(idx, super()._transcribe_items([items[i] for i in idx], adapted, sub_rows), strict=True):
                texts[i] = t
        return texts
