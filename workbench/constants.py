"""Units shared by every module (a leaf: imports nothing from the package).

>>> SAMPLE_RATE
16000
"""

SAMPLE_RATE = 16_000  # Hz, every waveform inside the package (mono float32 in [-1, 1])

__all__ = ["SAMPLE_RATE"]
