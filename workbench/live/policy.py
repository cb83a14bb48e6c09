"""When a word is final: the LocalAgreement-2 policy of whisper_streaming (Macháček et al., 2023).

The recognizer decodes a growing audio buffer again every step. Each decode gives a
hypothesis for the words not yet committed (its *tail*). A word is committed when two
consecutive tails agree on it: the longest common prefix of the previous tail and the
new one is committed, and what follows stays a partial (unstable) caption that the next
decode is compared with. At a pause or the end of the stream, :meth:`flush` commits the
pending tail as it stands (no newer decode can contradict it).

Words are compared by their normalized text; the times of a committed word are those of
the newer decode (it saw more audio).

>>> from workbench.live.events import Word
>>> p = LocalAgreement()
>>> w = lambda s: [Word(t, i, i + 1) for i, t in enumerate(s.split())]
>>> [x.text for x in p.update(w("i want"))[0]], [x.text for x in p.update(w("i want to"))[0]]
([], ['i', 'want'])
"""

from __future__ import annotations

from collections.abc import Sequence

from workbench.live.events import Word

__all__ = ["LocalAgreement", "common_prefix"]


def common_prefix(a: Sequence[Word], b: Sequence[Word]) -> int:
    """How many leading words ``a`` and ``b`` share (compared by text)."""
    n = 0
    for x, y in zip(a, b):
        if x.text != y.text:
            break
        n += 1
    return n


class LocalAgreement:
    """Commit what two consecutive decodes agree on (LocalAgreement with n = 2).

    ``update(tail)`` takes the newest hypothesis of the uncommitted words (the words
    after those already committed) and returns ``(committed, partial)``: the words
    committed now and the rest. The policy keeps only the previous tail, so it is
    bounded by one hypothesis.
    """

    def __init__(self) -> None:
        self._pending: list[Word] = []  # the previous decode's uncommitted words

    @property
    def pending(self) -> list[Word]:
        """The uncommitted words of the last decode (the partial caption)."""
        return list(self._pending)

    def update(self, tail: Sequence[Word], stable_until: float | None = None) -> tuple[list[Word], list[Word]]:
        """Compare ``tail`` with the previous one; returns ``(committed now, still partial)``.

        ``stable_until``: words ending after this time (seconds) are not committed even when both
        decodes agree: they may still be being spoken ("call forward un-" read as "and").
        """
        tail = list(tail)
        n = common_prefix(self._pending, tail)
        if stable_until is not None:
            while n and tail[n - 1].end_s > stable_until:
                n -= 1
        committed, self._pending = tail[:n], tail[n:]
        return committed, list(self._pending)

    def flush(self) -> list[Word]:
        """Commit the pending words as they stand (a pause or the end of the stream) and forget them."""
        out, self._pending = self._pending, []
        return out

    def reset(self) -> None:
        """Forget the pending words without committing them (audio skipped, or judged not speech)."""
        self._pending = []
