"""The wire format a device sends to the server: one utterance's compressed encoder representation.

Everything is little-endian. A message is a fixed 40-byte header, the speaker id and the payload::

    offset size  field
    0      4     magic b"WBDT" (workbench device tuning)
    4      1     format version (1; 2 adds the audio length, below)
    5      1     bits per symbol, 1..10 (the compressor's quantizer)
    6      2     dims: symbols per frame, 1..1024 (the bottleneck width)
    8      1     split layer k: the device ran the frontend and the first k encoder blocks
    9      1     frame stride s, 1..8: one symbol frame per s encoder frames
    10     2     speaker id length L, 0..128 (UTF-8 bytes)
    12     4     encoder frames N, 1..MAX_FRAMES (the server restores N frames)
    16     4     payload length P in bytes, a multiple of 4 (range-coder words)
    20     8     base-model fingerprint (the first 8 bytes of the weights' sha256)
    28     8     compressor id (the first 8 bytes of the compressor's sha256)
    36     4     CRC-32 of the header bytes 0..35, the speaker id and the payload
    40     L     speaker id (UTF-8; letters, digits, '-', '_', '.')
    40+L   P     payload: the range-coded symbols, ceil(N / s) * dims of them

Format version 2 (a Whisper split's messages) adds one field after the compressor id, so its
header is 44 bytes (the CRC at 40, the speaker id at 44)::

    36     4     audio samples S at 16 kHz, 1..MAX_SAMPLES: how long the recording was

A sequence-to-sequence server needs it: Whisper's encoding window and its decoding length cap
follow the recording's duration, and ``N`` must be the window's frames for ``S`` samples. The
built-in split sends version 1 (its server needs only ``N``); a version 1 message carries
``samples = 0``.

Format version 3 has version 2's header; its payload codes the padding symbol frames (those
at or after ``ceil(true frames / s)``, the window's silence after the audio) with an adaptive
model (:mod:`workbench.device_tuning.padding`), so that they cost almost nothing. A Whisper
split above ``k = 0`` sends version 3 and reads 2 and 3.

The header is a fixed cost per utterance (320 bits, 352 in version 2, plus the speaker id): at
two seconds an utterance it is ~160 bit/s, so it counts in every bit rate the benchmarks report.

Format version 4 has version 2's header too and is a Whisper split's at ``k = 0`` (log-mel):
its payload is the window's silence floor (4 bytes, float32: every log-mel value after the
audio equals it) and then the range-coded symbols of the audio's frames only (the compressor's
fixed tables: per position, or conditioned on the previous frame's symbol; the compressor id says which);
the server rebuilds the silence from the floor, exactly, so it costs 32 bits a message
(:mod:`workbench.device_tuning.whisper_split`).

A message is refused with a plain :class:`~workbench.errors.WireFormatError` when it is
truncated, longer than its header says, has a header whose sizes disagree, a bad CRC, or when
the server's model or compressor is not the one that made it (see :func:`check_compatible`).

>>> m = Message(b"\\x01" * 8, b"\\x02" * 8, split_layer=4, stride=2, bits=3, dims=16,
...             speaker="sim-als", frames=75, payload=b"\\x00" * 8)
>>> Message.from_bytes(m.to_bytes()) == m
True
>>> len(m.to_bytes())
55
"""

from __future__ import annotations

import dataclasses
import re
import struct
import zlib

from workbench.errors import WireFormatError

__all__ = ["FLOOR_BYTES", "HEADER_BYTES", "HEADER_BYTES_V2", "MAGIC", "MAX_FRAMES", "MAX_SAMPLES", "Message", "check_compatible"]

MAGIC = b"WBDT"
VERSION = 1
VERSION_SAMPLES = 2  # version 1 plus the audio length (samples)
VERSION_PADDING = 3  # version 2's header; the padding frames' symbols coded adaptively
VERSION_SILENCE = 4  # version 2's header; the silence floor, then the audio frames' symbols only (k = 0)
MAX_BITS = 10  # bits per symbol a message may name (a linear compressor's loudest components need 9)
HEADER_BYTES = 40
HEADER_BYTES_V2 = 44
MAX_SAMPLES = 16_000 * 60 * 10  # ten minutes at 16 kHz
FLOOR_BYTES = 4  # version 4: the silence floor (float32) that starts the payload
ID_BYTES = 8  # model fingerprint and compressor id on the wire
MAX_FRAMES = 25 * 60 * 10  # ten minutes of built-in encoder frames (25 per second)
MAX_DIMS = 1024
MAX_SPEAKER_BYTES = 128
_HEAD = struct.Struct("<4sBBHBBHII8s8s")  # everything before the CRC (36 bytes)
_SAMPLES = struct.Struct("<I")  # version 2: the audio samples, after _HEAD and before the CRC
_CRC = struct.Struct("<I")
_SPEAKER = re.compile(r"[A-Za-z0-9_.\-]*")


@dataclasses.dataclass(frozen=True)
class Message:
    """One utterance on the wire.

    Attributes:
        fingerprint: 8 bytes identifying the base model's weights.
        compressor: 8 bytes identifying the compressor (weights and symbol tables).
        split_layer: encoder blocks run on the device.
        stride: encoder frames per symbol frame.
        bits: bits per symbol before entropy coding.
        dims: symbols per symbol frame.
        speaker: whose Submodel the server applies ("" for the base model).
        frames: encoder frames ``N`` of the utterance.
        payload: the entropy-coded symbols (a multiple of 4 bytes).
        samples: the recording's length in samples at 16 kHz (format version 2), or 0 (version 1).
        padding_coded: the payload codes the padding frames adaptively (format version 3).
        silence_rebuilt: the payload is the silence floor and the audio frames' symbols (format version 4).
    """

    fingerprint: bytes
    compressor: bytes
    split_layer: int
    stride: int
    bits: int
    dims: int
    speaker: str
    frames: int
    payload: bytes
    samples: int = 0
    padding_coded: bool = False
    silence_rebuilt: bool = False

    @property
    def version(self) -> int:
        """The format version this message is sent in: 2 when it carries the audio length, 3 when
        its padding frames are coded adaptively as well, 4 when the silence is rebuilt from its floor."""
        if self.silence_rebuilt:
            return VERSION_SILENCE
        if self.padding_coded:
            return VERSION_PADDING
        return VERSION_SAMPLES if self.samples else VERSION

    @property
    def header_bytes(self) -> int:
        """The fixed header's size on the wire (40 or 44 bytes, without the speaker id)."""
        return HEADER_BYTES_V2 if self.samples else HEADER_BYTES

    @property
    def symbol_frames(self) -> int:
        """``ceil(frames / stride)``: how many frames of ``dims`` symbols the payload holds."""
        return -(-self.frames // self.stride)

    def validate(self) -> None:
        """Raise :class:`WireFormatError` unless every field is in range."""
        if len(self.fingerprint) != ID_BYTES or len(self.compressor) != ID_BYTES:
            raise WireFormatError(f"The model fingerprint and compressor id must be {ID_BYTES} bytes each.")
        if not 1 <= self.bits <= MAX_BITS:
            raise WireFormatError(f"The message says {self.bits} bits per symbol; 1 to {MAX_BITS} are valid.")
        if not 1 <= self.dims <= MAX_DIMS:
            raise WireFormatError(f"The message says {self.dims} symbols per frame; 1 to {MAX_DIMS} are valid.")
        if not 1 <= self.stride <= 8:
            raise WireFormatError(f"The message says a frame stride of {self.stride}; 1 to 8 are valid.")
        if not 0 <= self.split_layer <= 255:
            raise WireFormatError(f"The message says split layer {self.split_layer}; 0 to 255 are valid.")
        if not 1 <= self.frames <= MAX_FRAMES:
            raise WireFormatError(
                f"The message says {self.frames} encoder frames; 1 to {MAX_FRAMES} (ten minutes) are valid.")
        if not 0 <= self.samples <= MAX_SAMPLES:
            raise WireFormatError(
                f"The message says {self.samples} audio samples; 1 to {MAX_SAMPLES} (ten minutes at 16 kHz) are valid.")
        if self.padding_coded and not self.samples:
            raise WireFormatError("A message whose padding frames are coded adaptively (format version 3) must "
                                  "say how long the recording was.")
        if self.silence_rebuilt and (not self.samples or self.padding_coded or self.split_layer != 0
                                     or len(self.payload) < FLOOR_BYTES):
            raise WireFormatError("A message whose silence is rebuilt from its floor (format version 4) must come "
                                  "from split layer 0, say how long the recording was and start with the floor.")
        if len(self.payload) % 4:
            raise WireFormatError(f"The payload is {len(self.payload)} bytes, not a whole number of 4-byte words.")
        raw = self.speaker.encode("utf-8")
        if len(raw) > MAX_SPEAKER_BYTES or not _SPEAKER.fullmatch(self.speaker):
            raise WireFormatError(
                f"The speaker id {self.speaker[:40]!r} is not valid: use up to {MAX_SPEAKER_BYTES} letters, "
                "digits, '-', '_' or '.'.")

    def to_bytes(self) -> bytes:
        """The message as sent: header, speaker id, payload."""
        self.validate()
        spk = self.speaker.encode("utf-8")
        head = _HEAD.pack(MAGIC, self.version, self.bits, self.dims, self.split_layer, self.stride, len(spk),
                          self.frames, len(self.payload), self.fingerprint, self.compressor)
        if self.samples:
            head += _SAMPLES.pack(self.samples)
        crc = zlib.crc32(self.payload, zlib.crc32(spk, zlib.crc32(head)))
        return head + _CRC.pack(crc) + spk + self.payload

    @classmethod
    def from_bytes(cls, data: bytes) -> Message:
        """Parse and check one message; raises :class:`WireFormatError` on anything off."""
        data = bytes(data)
        if len(data) < HEADER_BYTES:
            raise WireFormatError(
                f"The message is {len(data)} bytes, shorter than the {HEADER_BYTES}-byte header: it was cut off. "
                "Send it again.")
        magic, version, bits, dims, split, stride, n_spk, frames, n_pay, fp, comp = _HEAD.unpack_from(data)
        if magic != MAGIC:
            raise WireFormatError("This is not a workbench device message (wrong magic bytes).")
        if version not in (VERSION, VERSION_SAMPLES, VERSION_PADDING, VERSION_SILENCE):
            raise WireFormatError(
                f"The message is format version {version}; this server reads versions {VERSION} to "
                f"{VERSION_SILENCE}. Update the device app or the server so that both match.")
        samples, head_size = 0, HEADER_BYTES
        if version >= VERSION_SAMPLES:
            if len(data) < HEADER_BYTES_V2:
                raise WireFormatError(
                    f"The message is {len(data)} bytes, shorter than the {HEADER_BYTES_V2}-byte header of format "
                    f"version {version}: it was cut off. Send it again.")
            (samples,) = _SAMPLES.unpack_from(data, _HEAD.size)
            if samples == 0:
                raise WireFormatError(f"The message is format version {version} but says the recording has 0 samples.")
            head_size = HEADER_BYTES_V2
        crc_at = head_size - _CRC.size
        if n_spk > MAX_SPEAKER_BYTES:
            raise WireFormatError(f"The header says a {n_spk}-byte speaker id; at most {MAX_SPEAKER_BYTES} are valid.")
        want = head_size + n_spk + n_pay
        if len(data) != want:
            what = "cut off" if len(data) < want else "longer than its header says"
            raise WireFormatError(
                f"The message is {len(data)} bytes but its header says {want}: it was {what}. Send it again.")
        (crc,) = _CRC.unpack_from(data, crc_at)
        spk_raw = data[head_size:head_size + n_spk]
        payload = data[head_size + n_spk:]
        if zlib.crc32(payload, zlib.crc32(spk_raw, zlib.crc32(data[:crc_at]))) != crc:
            raise WireFormatError("The message's checksum does not match: it was damaged on the way. Send it again.")
        try:
            speaker = spk_raw.decode("utf-8")
        except UnicodeDecodeError:
            raise WireFormatError("The speaker id in the message is not valid UTF-8 text.") from None
        msg = cls(fp, comp, split, stride, bits, dims, speaker, frames, payload, samples, version == VERSION_PADDING,
                  version == VERSION_SILENCE)
        msg.validate()
        return msg


def check_compatible(msg: Message, *, fingerprint: bytes, compressor: bytes, split_layer: int,
                     stride: int, bits: int, dims: int) -> None:
    """Refuse a message made by another model, split or compressor than the server's."""
    if msg.fingerprint != fingerprint:
        raise WireFormatError(
            f"The message was made with base model {msg.fingerprint.hex()[:12]}, but this server runs "
            f"{fingerprint.hex()[:12]}. Install the same model on the device and the server.")
    mine = (compressor, split_layer, stride, bits, dims)
    theirs = (msg.compressor, msg.split_layer, msg.stride, msg.bits, msg.dims)
    if theirs != mine:
        raise WireFormatError(
            f"The message was made with compressor {msg.compressor.hex()[:12]} (split {msg.split_layer}, stride "
            f"{msg.stride}, {msg.bits} bits x {msg.dims}); this server expects {compressor.hex()[:12]} (split "
            f"{split_layer}, stride {stride}, {bits} bits x {dims}). Use the same compressor on both sides.")
