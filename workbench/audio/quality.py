"""The quality report of a take: what :func:`check_quality` measures and the problems it lists.

A take is measured once (length, peak, clipping, levels of 25 ms frames, an
SNR estimate, the silence around the speech) and each check turns a
measurement into at most one :class:`Problem` in plain language: an error
(do not train on it) or a warning (usable). Levels are in dBFS.

>>> check_quality(np.zeros(16_000, dtype=np.float32)).codes
['silent']
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from workbench._deprecated import renamed_keywords
from workbench.audio.levels import (
    _EPS_POWER,
    _FLOOR_DBFS,
    _TRIM_TOP_DB,
    _frame_levels_db,
    _speech_bounds,
)
from workbench.audio.samples import _as_float32, _channel_axis, to_mono
from workbench.constants import SAMPLE_RATE
from workbench.errors import AudioError

__all__ = ["PROBLEM_CODES", "Problem", "QualityReport", "Severity", "check_quality"]

_CLIP_LEVEL = 0.999  # |x| at or above this counts as full scale
_CLIP_RATIO = 0.001  # more than 0.1 % of samples at full scale -> clipped
_SILENT_DBFS = -60.0  # speech level below this -> silent
_QUIET_ERROR_DBFS = -50.0  # speech level below this -> too quiet (error)
_QUIET_WARN_DBFS = -38.0  # speech level below this -> too quiet (warning)
_LOUD_PEAK = 0.99  # peak at or above this without clipping -> too loud (warning)
_NOISY_SNR_DB = 15.0  # estimated SNR below this -> noisy (warning)
_LONG_SILENCE_S = 1.5  # leading or trailing silence above this -> warning
_MIN_RATE = 8_000  # Hz; below this speech recognition is hopeless

#: Every :attr:`Problem.code` that :func:`check_quality` can report.
PROBLEM_CODES = (
    "bad_shape",
    "clipped",
    "empty",
    "long_silence",
    "noisy",
    "nonfinite",
    "not_audio",
    "silent",
    "stereo",
    "too_long",
    "too_loud",
    "too_quiet",
    "too_short",
    "wrong_rate",
)

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a recording.

    Attributes:
        code: stable identifier, one of :data:`PROBLEM_CODES` (for programs).
        severity: ``"error"`` (the take should not be used for training) or
            ``"warning"`` (usable, but could be better).
        message: plain language, with the measured value and what to do.
    """

    code: str
    severity: Severity
    message: str

    def __post_init__(self) -> None:
        if self.severity not in ("error", "warning"):
            raise ValueError(
                f"severity must be 'error' or 'warning', got {self.severity!r}"
            )

    def to_dict(self) -> dict[str, str]:
        """``{"code", "severity", "message"}``."""
        return {"code": self.code, "severity": self.severity, "message": self.message}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Problem:
        """Inverse of :meth:`to_dict`."""
        return cls(
            code=str(d["code"]), severity=d["severity"], message=str(d["message"])
        )


@dataclass
class QualityReport:
    """What :func:`check_quality` measured, and the problems it found.

    Attributes:
        duration_s: length in seconds.
        peak: largest ``|sample|`` (0..1 for valid audio; above 1 will be clipped).
        clipping_ratio: fraction of samples with ``|x| >= 0.999``.
        rms_dbfs: level of the whole take in dBFS (-120 for digital silence).
        speech_dbfs: level of the loud part: 95th percentile of 25 ms frame levels.
        snr_db: estimated signal-to-noise ratio: 95th minus 10th percentile of
            25 ms frame levels (10 ms hop), i.e. loud frames vs the pauses. Low
            when there are no pauses to measure the noise in.
        leading_silence_s: silence before the speech starts (frames 35 dB below
            the loudest one count as silence).
        trailing_silence_s: silence after the speech ends.
        speech_s: total time of non-silent frames.
        n_nonfinite: number of NaN/inf samples.
        sample_rate: rate of the checked audio in Hz.
        n_channels: channels of the checked audio.
        problems: what is wrong, errors first.
    """

    duration_s: float = 0.0
    peak: float = 0.0
    clipping_ratio: float = 0.0
    rms_dbfs: float = _FLOOR_DBFS
    speech_dbfs: float = _FLOOR_DBFS
    snr_db: float = 0.0
    leading_silence_s: float = 0.0
    trailing_silence_s: float = 0.0
    speech_s: float = 0.0
    n_nonfinite: int = 0
    sample_rate: int = SAMPLE_RATE
    n_channels: int = 1
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem is an error (warnings are fine)."""
        return not any(p.severity == "error" for p in self.problems)

    @property
    def codes(self) -> list[str]:
        """The problem codes, in order."""
        return [p.code for p in self.problems]

    @property
    def message(self) -> str:
        """All problem messages in one paragraph, or ``"Good recording."``."""
        if not self.problems:
            return "Good recording."
        return " ".join(p.message for p in self.problems)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (finite floats rounded to 4 decimals), for the manifest."""
        out: dict[str, Any] = {}
        for name in _REPORT_FLOATS:
            v = float(getattr(self, name))
            out[name] = round(v, 4) if math.isfinite(v) else 0.0
        out["n_nonfinite"] = int(self.n_nonfinite)
        out["sample_rate"] = int(self.sample_rate)
        out["n_channels"] = int(self.n_channels)
        out["ok"] = self.ok
        out["problems"] = [p.to_dict() for p in self.problems]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QualityReport:
        """Inverse of :meth:`to_dict`; missing fields take their defaults, unknown ones are ignored."""
        kwargs: dict[str, Any] = {k: float(d[k]) for k in _REPORT_FLOATS if k in d}
        for k in ("n_nonfinite", "sample_rate", "n_channels"):
            if k in d:
                kwargs[k] = int(d[k])
        kwargs["problems"] = [Problem.from_dict(p) for p in d.get("problems", [])]
        return cls(**kwargs)


_REPORT_FLOATS = (
    "duration_s",
    "peak",
    "clipping_ratio",
    "rms_dbfs",
    "speech_dbfs",
    "snr_db",
    "leading_silence_s",
    "trailing_silence_s",
    "speech_s",
)


def _valid_rate(sample_rate: Any) -> bool:
    """A positive whole number of Hz (``16000`` or ``16000.0``)."""
    if isinstance(sample_rate, bool) or not isinstance(
        sample_rate, (int, np.integer, float, np.floating)
    ):
        return False
    return (
        math.isfinite(sample_rate)
        and sample_rate > 0
        and float(sample_rate).is_integer()
    )


def _rate_problem(sample_rate: Any) -> Problem | None:
    if not _valid_rate(sample_rate):
        return Problem(
            "wrong_rate",
            "error",
            f"The sample rate {sample_rate!r} is not valid: it must be a number of Hz such as 16000. "
            "Check the recorder settings.",
        )
    rate = float(sample_rate)
    if rate < _MIN_RATE:
        return Problem(
            "wrong_rate",
            "error",
            f"Sample rate {rate:g} Hz is too low for speech recognition (at least 8000 Hz, ideally "
            "16000 Hz or more): change the recorder settings and record again.",
        )
    if rate < SAMPLE_RATE:
        quality = (
            "telephone quality"
            if rate == _MIN_RATE
            else "lower quality than the 16000 Hz we use"
        )
        return Problem(
            "wrong_rate",
            "warning",
            f"Sample rate {rate:g} Hz ({quality}): it will be converted to 16000 Hz, but high sounds "
            "such as 's' and 'f' are lost. If you can, set the recorder to 16000 Hz or more.",
        )
    if rate != SAMPLE_RATE:
        return Problem(
            "wrong_rate",
            "warning",
            f"Sample rate {rate:g} Hz: it will be converted to 16000 Hz automatically. Nothing to do.",
        )
    return None


@renamed_keywords(min_seconds="min_s", max_seconds="max_s")
def check_quality(
    wav: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    *,
    min_s: float = 0.5,
    max_s: float = 30.0,
) -> QualityReport:
    """Measure a take and list what is wrong with it, in plain language.

    Never raises on a numeric array of any dtype or shape (NaN, empty, int16,
    stereo ``(n, 2)``...); unusable input is reported as an error problem.

    Args:
        wav: ``(n,)`` or ``(n, channels)`` samples at ``sample_rate``; integer
            PCM is scaled (int16 / 32768).
        sample_rate: rate of ``wav`` in Hz. Not 16000: a ``wrong_rate``
            warning (it will be resampled); below 8000 Hz: an error.
        min_s: shorter takes are ``too_short`` errors.
        max_s: longer takes are ``too_long`` errors.

    Returns:
        A :class:`QualityReport`; ``report.ok`` is False when any problem is an
        error. Errors: empty, not_audio, bad_shape, nonfinite, too_short,
        too_long, silent, too_quiet (below -50 dBFS), clipped (over 0.1 % of
        samples at full scale), wrong_rate (below 8 kHz). Warnings: stereo,
        wrong_rate, too_quiet (below -38 dBFS), too_loud, noisy (SNR below
        15 dB), long_silence (over 1.5 s before or after the speech; it is
        trimmed by :func:`trim_silence`).
    """
    valid_rate = _valid_rate(sample_rate)
    rate = int(sample_rate) if valid_rate else SAMPLE_RATE  # durations need some rate
    report = QualityReport(sample_rate=rate if valid_rate else 0)  # 0: the given rate was not valid
    problems = [p for p in (_rate_problem(sample_rate),) if p is not None]
    x = _mono_samples(wav, report, problems)
    if x is not None:
        _check_take(x, rate, report, problems, min_s=min_s, max_s=max_s)
    report.problems = sorted(problems, key=lambda p: p.severity != "error")  # stable: errors first
    return report


def _check_take(
    x: np.ndarray, rate: int, report: QualityReport, problems: list[Problem], *, min_s: float,
    max_s: float,
) -> None:
    """The checks of a mono take ``x (n,)`` (NaN/inf already zeroed), in the order their problems are listed.

    Fills the measurements of ``report`` and appends to ``problems``; an empty or
    silent take stops the checks that would have nothing to measure.
    """
    if x.size == 0:
        problems.append(Problem(
            "empty",
            "error",
            "Nothing was recorded (0 samples): check that the microphone is connected and selected, "
            "then record again.",
        ))
        return
    problems += _length_problems(x.size, rate, report, min_s=min_s, max_s=max_s)
    levels, frame_len, hop = _measure_levels(x, rate, report)
    silent = _silent_problem(report)
    if silent is not None:
        problems.append(silent)
        return
    first, last, count = _speech_bounds(levels, _TRIM_TOP_DB)
    n = x.size
    start, end = first * hop, min(n, last * hop + frame_len)
    report.leading_silence_s = start / rate
    report.trailing_silence_s = (n - end) / rate
    report.speech_s = min(report.duration_s, count * hop / rate)
    problems += _loudness_problems(report)
    problems += _noise_problems(report)


def _mono_samples(wav: Any, report: QualityReport, problems: list[Problem]) -> np.ndarray | None:
    """``wav`` as ``(n,)`` float32 with NaN/inf set to 0 (counted in ``report.n_nonfinite``).

    None, with a ``not_audio`` or ``bad_shape`` error in ``problems``, when it is
    not numbers or not ``(n,)``/``(n, channels)``; several channels add a ``stereo`` warning.
    """
    try:
        x = _as_float32(wav)
    except (AudioError, TypeError, ValueError):
        problems.append(Problem(
            "not_audio",
            "error",
            "This is not audio (the data are not numbers). Record again; if it keeps happening, "
            "restart the recorder.",
        ))
        return None
    if x.ndim == 2 and _channel_axis(x.shape) is not None:
        axis = _channel_axis(x.shape)
        report.n_channels = int(x.shape[axis])  # type: ignore[index]
        if report.n_channels > 1:
            problems.append(Problem(
                "stereo",
                "warning",
                f"Stereo recording ({report.n_channels} channels): it will be mixed to mono automatically.",
            ))
        nonfinite = ~np.isfinite(x)
        x = np.where(nonfinite, 0.0, x).astype(np.float32)
        report.n_nonfinite = int(np.count_nonzero(nonfinite))
        return to_mono(x)
    if x.ndim <= 1:
        x = x.reshape(-1)
        nonfinite = ~np.isfinite(x)
        report.n_nonfinite = int(np.count_nonzero(nonfinite))
        return np.where(nonfinite, 0.0, x).astype(np.float32)
    problems.append(Problem(
        "bad_shape",
        "error",
        f"The audio has an unexpected shape {x.shape}: expected (samples,) or (samples, channels). "
        "Record again; if it keeps happening, restart the recorder.",
    ))
    return None


def _length_problems(
    n: int, rate: int, report: QualityReport, *, min_s: float, max_s: float
) -> list[Problem]:
    """``nonfinite``, ``too_short`` and ``too_long`` of ``n >= 1`` samples at ``rate`` Hz; sets ``duration_s``."""
    problems = []
    if report.n_nonfinite:
        problems.append(Problem(
            "nonfinite",
            "error",
            f"{report.n_nonfinite} samples ({100 * report.n_nonfinite / n:.1f}%) are not numbers (NaN or "
            "infinity): the recording is damaged. Check the microphone connection and record again.",
        ))
    report.duration_s = n / rate
    if report.duration_s < min_s:
        problems.append(Problem(
            "too_short",
            "error",
            f"Too short ({report.duration_s:.2f} s): a take needs at least {min_s:g} s. "
            "Record again and read the whole prompt.",
        ))
    if report.duration_s > max_s:
        problems.append(Problem(
            "too_long",
            "error",
            f"Too long ({report.duration_s:.1f} s; the limit is {max_s:g} s): record one prompt "
            "per take, or split the recording.",
        ))
    return problems


def _measure_levels(x: np.ndarray, rate: int, report: QualityReport) -> tuple[np.ndarray, int, int]:
    """Peak, clipping ratio, levels and SNR of ``x (n,)`` into ``report``; returns :func:`_frame_levels_db`."""
    ax = np.abs(x)
    report.peak = float(ax.max())
    report.clipping_ratio = float(np.count_nonzero(ax >= _CLIP_LEVEL) / x.size)
    mean_power = float(np.mean(np.square(x, dtype=np.float64)))
    report.rms_dbfs = float(10.0 * math.log10(max(mean_power, _EPS_POWER)))
    levels, frame_len, hop = _frame_levels_db(x, rate)
    report.speech_dbfs = float(np.percentile(levels, 95))
    report.snr_db = float(max(0.0, report.speech_dbfs - np.percentile(levels, 10)))
    return levels, frame_len, hop


def _silent_problem(report: QualityReport) -> Problem | None:
    """``silent`` (an error) for digital silence or a speech level below -60 dBFS."""
    if report.peak != 0.0 and report.speech_dbfs >= _SILENT_DBFS:
        return None
    level = "digital silence" if report.peak == 0.0 else f"{report.speech_dbfs:.0f} dBFS"
    return Problem(
        "silent",
        "error",
        f"Silent ({level}): no sound reached the microphone. Check that the right microphone is "
        "selected and not muted, then record again.",
    )


def _loudness_problems(report: QualityReport) -> list[Problem]:
    """``clipped`` (error) or ``too_loud`` (warning), then ``too_quiet`` (error below -50 dBFS, else warning)."""
    problems = []
    if report.clipping_ratio > _CLIP_RATIO:
        problems.append(Problem(
            "clipped",
            "error",
            f"Clipped ({100 * report.clipping_ratio:.1f}% of samples at full scale): the sound was too "
            "loud for the recorder. Move the microphone a little further away (15-45 cm) or lower the "
            "input volume, then record again.",
        ))
    elif report.peak >= _LOUD_PEAK:
        problems.append(Problem(
            "too_loud",
            "warning",
            f"Very loud (peak at {100 * min(report.peak, 1.0):.0f}% of full scale): close to clipping. "
            "Move the microphone a little further away or lower the input volume.",
        ))
    if report.speech_dbfs < _QUIET_WARN_DBFS:
        severity: Severity = "error" if report.speech_dbfs < _QUIET_ERROR_DBFS else "warning"
        problems.append(Problem(
            "too_quiet",
            severity,
            f"Too quiet ({report.speech_dbfs:.0f} dBFS): move the microphone closer (15-45 cm) or speak "
            "a little louder, then record again.",
        ))
    return problems


def _noise_problems(report: QualityReport) -> list[Problem]:
    """``noisy`` (SNR below 15 dB) and ``long_silence`` (over 1.5 s before or after the speech), warnings."""
    problems = []
    if report.snr_db < _NOISY_SNR_DB:
        problems.append(Problem(
            "noisy",
            "warning",
            f"Background noise is high (estimated signal-to-noise ratio {report.snr_db:.0f} dB): record in "
            "a quieter room, away from fans and traffic, or move the microphone closer.",
        ))
    if max(report.leading_silence_s, report.trailing_silence_s) > _LONG_SILENCE_S:
        parts = []
        if report.leading_silence_s > _LONG_SILENCE_S:
            parts.append(f"{report.leading_silence_s:.1f} s before the speech")
        if report.trailing_silence_s > _LONG_SILENCE_S:
            parts.append(f"{report.trailing_silence_s:.1f} s after it")
        problems.append(Problem(
            "long_silence",
            "warning",
            f"Long silence ({' and '.join(parts)}): it is trimmed automatically. Next time, start "
            "speaking soon after pressing Record and stop soon after the last word.",
        ))
    return problems
