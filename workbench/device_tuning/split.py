"""A base model split between the patient's device and the server, with the compressor between.

The device runs the frontend and the first ``k`` encoder blocks (the backend's frozen-prefix
path, :meth:`ASRBackend.cache_features` with ``frozen_layers=k``), compresses the hidden states
and sends one :class:`~workbench.device_tuning.wire.Message` per utterance. The server checks the
message against its own model and compressor, restores the hidden states and runs the frozen
rest of the model from block ``k`` (a :class:`~workbench.models.base.Batch` with
``start_layer=k``), with each speaker's Submodel where it has one. Raw audio never leaves
the device.

With ``compressor=None`` the hidden states pass unchanged (in-process only): the split model
then equals the unsplit one, which the tests check.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from workbench.device_tuning.compressor import Compressor
from workbench.device_tuning.entropy import decode_symbols, encode_symbols, payload_bounds
from workbench.device_tuning.wire import Message, check_compatible
from workbench.errors import WireFormatError, WorkbenchError
from workbench.models.base import MAX_TRAIN_S, CachedFeatures

if TYPE_CHECKING:
    from workbench.adapters import Adapted
    from workbench.models import ASRBackend

__all__ = ["ServerSideBackend", "SplitModel"]


class SplitModel:
    """Device part + compressor + server part of one frozen backend.

    Args:
        backend: a backend with ``supports_frozen_prefix`` (the built-in model, Whisper).
        split_layer: ``k``, encoder blocks run on the device (1 .. num_layers).
        compressor: the trained :class:`Compressor`, or None to pass hidden states unchanged.
    """

    min_split_layer = 1  # the built-in model's blocks start from its subsampled frames

    def __init__(self, backend: ASRBackend, split_layer: int, compressor: Compressor | None = None) -> None:
        if not getattr(backend, "supports_frozen_prefix", False):
            raise WorkbenchError(f"{backend.name} cannot be split between a device and a server yet.")
        if not self.min_split_layer <= split_layer <= backend.num_layers:
            raise WorkbenchError(f"The split layer must be {self.min_split_layer} to {backend.num_layers} for "
                                 f"{backend.name}; got {split_layer}.")
        self.backend = backend
        self.split_layer = split_layer
        if compressor is not None and compressor.config.d_model != self.width:
            raise WorkbenchError(
                f"This compressor was made for width {compressor.config.d_model}, but {backend.name} has "
                f"width {self.width} at split layer {split_layer}: train a compressor for this model and split.")
        self.compressor = compressor

    @property
    def width(self) -> int:
        """Values per frame the device sends (before compression): the encoder's width."""
        return int(self.backend.hidden_size)

    @property
    def fingerprint(self) -> bytes:
        """8 bytes of the base model's weight fingerprint (what the wire header carries)."""
        return bytes.fromhex(self.backend.fingerprint()[:16])

    # -- device ---------------------------------------------------------------
    def device_hidden(self, waveforms: Sequence[np.ndarray]) -> list[CachedFeatures]:
        """What the device computes: per waveform the hidden states ``(T'_i, D)`` after block ``k``
        (:class:`~workbench.models.base.CachedFeatures` with ``start_layer = k``)."""
        return self.backend.cache_features(list(waveforms), frozen_layers=self.split_layer)

    def encode(self, waveforms: Sequence[np.ndarray], speaker: str = "") -> list[Message]:
        """Device side: waveforms (16 kHz) -> one wire message each (needs a compressor)."""
        c = self._need_compressor()
        tables = c.tables.cpu().numpy()
        out = []
        with torch.no_grad():
            for it in self.device_hidden(waveforms):
                h, frames, samples_field = self._wire_frames(it.features, it.length, it.samples)
                payload, flags = self._payload(h, tables, frames, samples_field)
                out.append(Message(self.fingerprint, c.identity(), self.split_layer, c.config.stride, c.config.bits,
                                   c.config.dims, speaker, frames, payload, samples_field, **flags))
        return out

    def round_trip(self, fn, h: torch.Tensor, samples) -> torch.Tensor:
        """What the server restores from device states ``h (B, N, D)``, with ``fn`` the compressor's
        round trip (the compressor itself, quantized and straight-through, or its ``unrounded``);
        ``samples`` (each recording's length) matter to a Whisper split only."""
        return fn(h)

    def coded_symbols(self, h: torch.Tensor, samples: int) -> torch.Tensor:
        """The symbols ``(ceil(N/s), dims)`` of one recording's states ``h (N, D)`` that go on the wire."""
        return self._need_compressor().encode(h[None].float())[0]

    def _payload(self, h: torch.Tensor, tables: np.ndarray, frames: int, samples: int) -> tuple[bytes, dict]:
        """The payload of one recording's wire states ``h (N, D)`` and the :class:`Message` flags of
        its format version (none: version 1, fixed tables, no padding)."""
        return encode_symbols(self.coded_symbols(h, samples).cpu().numpy(), tables), {}

    def max_payload_bytes(self, symbol_frames: int) -> int:
        """The largest payload a message of ``symbol_frames`` frames can hold in the format this split sends."""
        return payload_bounds(self._need_compressor().tables.cpu().numpy(), symbol_frames)[1]

    def _decode_payload(self, msg: Message, tables: np.ndarray) -> np.ndarray:
        """A checked message's payload -> symbols ``(ceil(N/s), dims)``."""
        if msg.version > 2:
            raise WireFormatError(
                f"The message is format version {msg.version} (a Whisper split's), but this server runs "
                f"{self.backend.name}'s split: send it to a Whisper server, or use the device app made for this server.")
        return decode_symbols(msg.payload, tables, frames=msg.symbol_frames)

    def _wire_frames(self, h: torch.Tensor, frames: int, samples: int) -> tuple[torch.Tensor, int, int]:
        """What of a device output goes on the wire: ``(states (N, D), N, samples field)``. The
        built-in model's server needs only its ``N`` true frames (format version 1)."""
        return h[:frames], frames, 0

    def _check_frames(self, msg: Message) -> None:
        """Refuse a message whose sizes this server cannot restore (besides :attr:`max_frames`)."""

    # -- server ---------------------------------------------------------------
    def check(self, msg: Message) -> None:
        """Refuse a message from another model, split or compressor (plain :class:`WireFormatError`)."""
        c = self._need_compressor()
        check_compatible(msg, fingerprint=self.fingerprint, compressor=c.identity(), split_layer=self.split_layer,
                         stride=c.config.stride, bits=c.config.bits, dims=c.config.dims)

    @functools.cached_property
    def max_frames(self) -> int:
        """Encoder frames of the longest utterance a device sends (``MAX_TRAIN_S`` of audio, which
        the device part refuses to exceed): the server refuses messages that claim more, so one
        request cannot buy more than that much compute. Measured once on silence."""
        silence = np.zeros(round(MAX_TRAIN_S * self.backend.sample_rate), dtype=np.float32)
        return int(self.device_hidden([silence])[0].length)

    def symbols(self, msg: Message) -> np.ndarray:
        """Server side, one message: check it, then decode its payload to ``(ceil(N/s), dims)`` symbols.

        Everything that can be wrong with one device's message is found here (before it joins a
        batch): another model or compressor, more frames than :attr:`max_frames`, a payload
        whose size does not fit its frames, a payload that does not decode.

        Raises:
            WireFormatError: with a message the device's user can act on.
        """
        self.check(msg)
        self._check_frames(msg)
        if msg.frames > self.max_frames:
            fps = self.max_frames / MAX_TRAIN_S
            raise WireFormatError(
                f"The message holds {msg.frames} encoder frames (about {msg.frames / fps:.0f} s of speech); this "
                f"server takes at most {self.max_frames} ({MAX_TRAIN_S:.0f} s) per message: send shorter pieces.")
        return self._decode_payload(msg, self.compressor.tables.cpu().numpy())

    def hidden(self, symbols: np.ndarray, msg: Message) -> torch.Tensor:
        """Server side: the decoded symbols of ``msg`` (:meth:`symbols`) -> hidden states ``(N, D)``
        for block ``k`` on."""
        c = self._need_compressor()
        with torch.no_grad():
            return c.decode(torch.from_numpy(np.asarray(symbols))[None], msg.frames)[0]

    def restore(self, messages: Sequence[Message]) -> list[torch.Tensor]:
        """Server side: messages -> hidden states ``(T'_i, D)`` for block ``k`` on."""
        return [self.hidden(self.symbols(m), m) for m in messages]

    def _items(self, hidden: Sequence[torch.Tensor], samples: Sequence[int] | None) -> list[CachedFeatures]:
        """Restored states -> the backend's cached items (all ``T'_i`` frames true; the built-in model's
        decoding needs no audio length, so ``samples`` is ignored and the field holds ``T'_i``)."""
        return [CachedFeatures(h, int(h.shape[0]), int(h.shape[0]), self.split_layer) for h in hidden]

    def transcribe_hidden(self, hidden: Sequence[torch.Tensor], *, samples: Sequence[int] | None = None,
                          adapted: Adapted | None = None, rows: Sequence[int] | None = None) -> list[str]:
        """The frozen rest of the model on restored hidden states, one transcript each.

        Args:
            hidden: ``(T'_i, D)`` per utterance, as :meth:`restore` or :meth:`device_hidden` give.
            samples: each recording's length in samples at 16 kHz (a message's ``samples``), which
                a sequence-to-sequence split needs; the built-in split ignores it.
            adapted: the backend with Submodels injected (a bank's ``adapted``), or None: the base
                model, with any adapters injected into this backend (a Trainer's, a bank's)
                switched off for the call and back as they were after it.
            rows: the Submodel row of each utterance (with ``adapted``).
        """
        items = self._items(hidden, samples)
        if not items:
            return []
        if adapted is None:
            with contextlib.ExitStack() as off:
                for other in _injected(self.backend):
                    off.enter_context(other.disabled())
                return self._transcribe_items(items, None, rows)
        return self._transcribe_items(items, adapted, rows)

    def _transcribe_items(self, items: list[CachedFeatures], adapted: Adapted | None,
                          rows: Sequence[int] | None) -> list[str]:
        backend = self.backend
        batch = backend.collate(items, list(rows) if rows is not None else [0] * len(items))
        if adapted is None or rows is None:
            batch.speaker_index = None
        route = contextlib.nullcontext() if adapted is None else adapted.route(batch.speaker_index)
        was = backend.module.training
        backend.module.eval()
        try:
            with torch.no_grad(), route:
                return backend.decode_batch(batch)  # the backend's greedy decoding (CTC or its own search)
        finally:
            backend.module.train(was)

    def transcribe(self, waveforms: Sequence[np.ndarray]) -> list[str]:
        """The whole round trip in one process (device, wire bytes, server), for evaluation."""
        if self.compressor is None:
            items = self.device_hidden(waveforms)
            return self.transcribe_hidden([it.features for it in items], samples=[it.samples for it in items])
        msgs = [Message.from_bytes(m.to_bytes()) for m in self.encode(waveforms)]
        return self.transcribe_hidden(self.restore(msgs), samples=[m.samples for m in msgs])

    def server_backend(self) -> ServerSideBackend:
        """The backend as the server sees it, for training server-side Submodels with the
        ordinary Trainer (adapters on blocks ``k`` and above: ``top_layers = num_layers - k``)."""
        return ServerSideBackend(self)

    def _need_compressor(self) -> Compressor:
        if self.compressor is None:
            raise WorkbenchError("This split model has no compressor, so it cannot make wire messages: "
                                 "load or train one (recipes/train_compressor.py).")
        return self.compressor


def _injected(backend: ASRBackend) -> list[Adapted]:
    """The :class:`~workbench.adapters.Adapted` handles whose hooks sit on ``backend``'s modules
    (an injection keeps no list on the backend; each hook holds its handle)."""
    from workbench.adapters import Adapted

    found: dict[int, Adapted] = {}
    for module in backend.module.modules():
        for hooks in (module._forward_hooks, module._forward_pre_hooks):
            for fn in hooks.values():
                for cell in getattr(fn, "__closure__", None) or ():
                    with contextlib.suppress(ValueError):  # an empty cell
                        if isinstance(cell.cell_contents, Adapted):
                            found[id(cell.cell_contents)] = cell.cell_contents
    return list(found.values())


class ServerSideBackend:
    """A backend whose frozen-prefix features are what the server restores from the wire.

    Everything is the wrapped backend's except :meth:`cache_features`: with ``frozen_layers = k``
    (the split layer) it returns the device part's hidden states after the compressor's round
    trip (quantized exactly as on the wire), so a Trainer fits adapters to what the server will see.
    """

    def __init__(self, split: SplitModel) -> None:
        self._split = split

    def __getattr__(self, name: str):
        return getattr(self._split.backend, name)

    def cache_features(self, waveforms: list[np.ndarray], *, frozen_layers: int = 0) -> list[CachedFeatures]:
        k = self._split.split_layer
        if frozen_layers != k:
            raise WorkbenchError(
                f"Server-side Submodels start at the split (block {k}): train adapters on the top "
                f"{self._split.backend.num_layers - k} blocks only (top_layers={self._split.backend.num_layers - k}), "
                "without SpecAugment.")
        # the backend's own cache (one shared window for Whisper, so that a Trainer's batches stack)
        items = self._split.backend.cache_features(list(waveforms), frozen_layers=k)
        comp = self._split.compressor
        if comp is None:
            return items

        def wire(h: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
            return comp.decode(comp.encode(h), h.shape[1], valid)

        with torch.no_grad():
            return [dataclasses.replace(it, features=self._split.round_trip(wire, it.features[None].float(),
                                                                            [it.samples])[0]) for it in items]
