"""Honest ASR metrics: WER/CER with jiwer, word alignments, before/after, intervals.

(The ``evaluate`` command, which scores a Submodel on a speaker, is :mod:`workbench.workflow.evaluation`;
``workbench.evaluate`` is this module's former name, kept as an alias.)

One text normalization is applied to references and hypotheses alike:
:func:`workbench.text.normalize_text` (case folded, punctuation removed, simple
numbers spelled out, apostrophes inside words kept). Metrics are **corpus-level**:
errors summed over utterances divided by reference words summed over utterances,
not a mean of per-utterance rates (short utterances would otherwise dominate).
An utterance whose reference has no words after normalization (``"!!!"``) cannot
be scored: it is left out of every rate, with a warning, instead of counting each
recognised word as an error.

Every figure here is an *ASR word error rate*: how often a speech recogniser gets
a word wrong. It is not a clinical intelligibility score (Gutz et al. 2022) and
is labelled so in every table and report.

>>> round(wer(["turn on the light"], ["turn of the light"]), 2)
0.25
"""

from __future__ import annotations

import csv
import dataclasses
import html
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from workbench.notices import notify
from workbench.text import normalize_text

__all__ = [
    "METRIC_LABEL",
    "AlignedWord",
    "Comparison",
    "ErrorCounts",
    "UtteranceResult",
    "align_words",
    "alignment_html",
    "alignment_legend",
    "bootstrap_wer_difference",
    "cer",
    "compare",
    "error_counts",
    "wer",
]

METRIC_LABEL = "ASR word error rate (not a clinical intelligibility score)"

_OP_NAMES = {"equal": "ok", "substitute": "sub", "delete": "del", "insert": "ins"}
_COLOURS = {"ok": "#1b5e20", "sub": "#b26a00", "del": "#b71c1c", "ins": "#0d47a1"}
_BACKGROUNDS = {"ok": "transparent", "sub": "#fff3e0", "del": "#ffebee", "ins": "#e3f2fd"}


@dataclasses.dataclass(frozen=True)
class ErrorCounts:
    """Word (or character) edit counts against ``ref_len`` reference tokens."""

    substitutions: int
    deletions: int
    insertions: int
    ref_len: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        """Errors / reference tokens; 0.0 for an empty reference with no insertions,
        ``inf`` for an empty reference with insertions (the rate is undefined there)."""
        if self.ref_len == 0:
            return 0.0 if self.insertions == 0 else float("inf")
        return self.errors / self.ref_len

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(self.substitutions + other.substitutions, self.deletions + other.deletions,
                           self.insertions + other.insertions, self.ref_len + other.ref_len)


@dataclasses.dataclass(frozen=True)
class AlignedWord:
    """One step of a word alignment: ``op`` is "ok", "sub", "del" or "ins"."""

    op: str
    ref: str  # "" for an insertion
    hyp: str  # "" for a deletion


def _check_pair(refs: Sequence[str], hyps: Sequence[str]) -> tuple[list[str], list[str]]:
    if isinstance(refs, str) or isinstance(hyps, str):
        raise TypeError("pass lists of strings (one per utterance), not a single string")
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses: pass one hypothesis per reference")
    return [normalize_text(r) for r in refs], [normalize_text(h) for h in hyps]


def _drop_wordless(refs: list[str], *hyps: list[str], ids: Sequence[str] | None = None,
                   originals: Sequence[str] | None = None) -> tuple[list[str], ...]:
    """Leave out the utterances whose normalized reference is empty, with one warning.

    Args:
        refs: normalized references; ``hyps``: lists of the same length.
        ids: utterance ids, named in the warning; else ``originals`` (the texts given).

    Returns:
        ``(refs, *hyps[, ids])`` without those utterances (``ids`` last, if given).
    """
    keep = [i for i, r in enumerate(refs) if r]
    if len(keep) < len(refs):
        gone = [i for i, r in enumerate(refs) if not r]
        names = [repr(ids[i]) if ids is not None else repr(originals[i] if originals is not None else "")
                 for i in gone]
        more = f" and {len(gone) - 5} more" if len(gone) > 5 else ""
        notify(
            f"{len(gone)} of {len(refs)} utterances were left out of the error rates: their reference has no words "
            f"to score ({', '.join(names[:5])}{more}). Record them again with a prompt that has words, or mark them "
            "skipped.",
            stacklevel=3,
        )
    out = tuple([x[i] for i in keep] for x in (refs, *hyps))
    return out + ((list(ids[i] for i in keep),) if ids is not None else ())


def _per_utterance(refs: list[str], hyps: list[str], *, chars: bool) -> list[tuple[ErrorCounts, list]]:
    import jiwer

    if not refs:
        return []
    out = jiwer.process_characters(refs, hyps) if chars else jiwer.process_words(refs, hyps)
    results = []
    for ref, hyp, chunks in zip(out.references, out.hypotheses, out.alignments, strict=True):
        s = d = i = 0
        for c in chunks:
            if c.type == "substitute":
                s += c.ref_end_idx - c.ref_start_idx
            elif c.type == "delete":
                d += c.ref_end_idx - c.ref_start_idx
            elif c.type == "insert":
                i += c.hyp_end_idx - c.hyp_start_idx
        results.append((ErrorCounts(s, d, i, len(ref)), chunks))
    return results


def error_counts(refs: Sequence[str], hyps: Sequence[str], *, chars: bool = False) -> ErrorCounts:
    """Corpus-level edit counts after normalization (words, or characters with ``chars``).

    Utterances whose reference has no words are left out, with a warning."""
    r, h = _check_pair(refs, hyps)
    r, h = _drop_wordless(r, h, originals=list(refs))
    total = ErrorCounts(0, 0, 0, 0)
    for counts, _ in _per_utterance(r, h, chars=chars):
        total = total + counts
    return total


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus-level ASR word error rate in [0, inf) (see module docstring)."""
    return error_counts(refs, hyps).rate


def cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus-level character error rate (spaces count as characters, as in jiwer)."""
    return error_counts(refs, hyps, chars=True).rate


def align_words(ref: str, hyp: str) -> list[AlignedWord]:
    """Word-by-word alignment of one utterance (after normalization)."""
    (r,), (h,) = _check_pair([ref], [hyp])
    ((_, chunks),) = _per_utterance([r], [h], chars=False)
    rw, hw = r.split(), h.split()
    steps: list[AlignedWord] = []
    for c in chunks:
        op = _OP_NAMES[c.type]
        if op in ("ok", "sub"):
            steps += [AlignedWord(op, a, b) for a, b in zip(rw[c.ref_start_idx:c.ref_end_idx],
                                                             hw[c.hyp_start_idx:c.hyp_end_idx], strict=True)]
        elif op == "del":
            steps += [AlignedWord(op, a, "") for a in rw[c.ref_start_idx:c.ref_end_idx]]
        else:
            steps += [AlignedWord(op, "", b) for b in hw[c.hyp_start_idx:c.hyp_end_idx]]
    return steps


def alignment_html(ref: str, hyp: str, *, legend: bool = False) -> str:
    """One utterance's alignment as inline HTML: correct words plain, substitutions
    as ``said→heard`` on orange, deletions struck through on red, insertions on blue.
    Colour is never the only cue: each error also carries a symbol and a tooltip."""
    parts = []
    for step in align_words(ref, hyp):
        style = f"color:{_COLOURS[step.op]};background:{_BACKGROUNDS[step.op]};padding:0 2px;border-radius:3px"
        r, h = html.escape(step.ref), html.escape(step.hyp)
        if step.op == "ok":
            parts.append(f"<span style='{style}'>{r}</span>")
        elif step.op == "sub":
            parts.append(f"<span style='{style}' title='substitution: said “{r}”, recognised “{h}”'>"
                         f"{r}&rarr;<b>{h}</b></span>")
        elif step.op == "del":
            parts.append(f"<span style='{style}' title='deletion: “{r}” was missed'><s>{r}</s></span>")
        else:
            parts.append(f"<span style='{style}' title='insertion: “{h}” was not said'>+<i>{h}</i></span>")
    body = "<span class='wb-align'>" + " ".join(parts) + "</span>" if parts else "<span class='wb-align'>(empty)</span>"
    return body + (alignment_legend() if legend else "")


def alignment_legend() -> str:
    """The HTML legend for :func:`alignment_html`."""
    items = [("ok", "correct"), ("sub", "said&rarr;<b>recognised</b> (substitution)"),
             ("del", "<s>missed</s> (deletion)"), ("ins", "+<i>extra</i> (insertion)")]
    spans = " ".join(f"<span style='color:{_COLOURS[k]};background:{_BACKGROUNDS[k]};padding:0 4px'>{t}</span>"
                     for k, t in items)
    return f"<div class='wb-legend' style='font-size:0.85em;margin-top:4px'>{spans}</div>"


@dataclasses.dataclass(frozen=True)
class UtteranceResult:
    """One utterance before and after personalization."""

    utt_id: str
    reference: str
    before: str
    after: str
    before_counts: ErrorCounts
    after_counts: ErrorCounts

    @property
    def change(self) -> int:
        """Word errors removed (positive = better after)."""
        return self.before_counts.errors - self.after_counts.errors


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Before/after WER for one speaker with a paired bootstrap interval."""

    utterances: list[UtteranceResult]
    wer_before: float
    wer_after: float
    cer_before: float
    cer_after: float
    interval: dict  # from bootstrap_wer_difference

    @property
    def relative_reduction(self) -> float:
        """``(before - after) / before``; 0.0 when before is 0."""
        return (self.wer_before - self.wer_after) / self.wer_before if self.wer_before > 0 else 0.0

    def summary(self) -> str:
        """One plain sentence with both rates, the relative change and the interval."""
        lo, hi = self.interval["diff_low"], self.interval["diff_high"]
        change = (f"{100 * self.relative_reduction:.0f}% fewer word errors" if self.wer_after < self.wer_before
                  else "no improvement")
        return (f"{METRIC_LABEL}: {100 * self.wer_before:.1f}% before, {100 * self.wer_after:.1f}% after "
                f"({change}); 95% interval of the drop: {100 * lo:.1f} to {100 * hi:.1f} points, "
                f"over {len(self.utterances)} held-out utterances")

    def worst(self, k: int = 5) -> list[UtteranceResult]:
        """The ``k`` utterances with the most word errors after personalization."""
        return sorted(self.utterances, key=lambda u: (-u.after_counts.errors, u.utt_id))[:k]

    def best(self, k: int = 5) -> list[UtteranceResult]:
        """The ``k`` utterances that improved most."""
        return sorted(self.utterances, key=lambda u: (-u.change, u.utt_id))[:k]

    def to_csv(self, path: str | Path) -> Path:
        """One row per utterance: texts, word errors before/after, reference words."""
        path = Path(path)
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["utt_id", "reference", "before", "after", "ref_words", "errors_before", "errors_after",
                        "wer_before", "wer_after"])
            for u in self.utterances:
                w.writerow([u.utt_id, u.reference, u.before, u.after, u.before_counts.ref_len,
                            u.before_counts.errors, u.after_counts.errors,
                            f"{u.before_counts.rate:.4f}", f"{u.after_counts.rate:.4f}"])
        return path

    def to_html_table(self, rows: Sequence[UtteranceResult] | None = None) -> str:
        """Per-utterance before/after alignments as an HTML table with a legend."""
        rows = self.utterances if rows is None else rows
        body = "".join(
            f"<tr><td>{html.escape(u.utt_id)}</td><td>{alignment_html(u.reference, u.before)}</td>"
            f"<td>{u.before_counts.errors}</td><td>{alignment_html(u.reference, u.after)}</td>"
            f"<td>{u.after_counts.errors}</td></tr>" for u in rows)
        return ("<table class='wb-compare'><thead><tr><th>utterance</th><th>base model heard</th><th>errors</th>"
                "<th>personal model heard</th><th>errors</th></tr></thead><tbody>" + body + "</tbody></table>"
                + alignment_legend())


def bootstrap_wer_difference(refs: Sequence[str], before: Sequence[str], after: Sequence[str], *,
                             n_resamples: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Paired bootstrap over utterances of ``WER(before) - WER(after)``.

    Utterances are resampled with replacement (the same indices for both systems),
    and corpus-level WER is recomputed on each resample.

    Returns:
        dict with ``diff`` (observed drop, fraction), ``diff_low``/``diff_high`` (the
        ``level`` percentile interval), ``p_not_better`` (fraction of resamples in which
        the personal model was not better), and ``n``.
    """
    r, b = _check_pair(refs, before)
    _, a = _check_pair(refs, after)
    r, b, a = _drop_wordless(r, b, a, originals=list(refs))
    per_b = _per_utterance(r, b, chars=False)
    per_a = _per_utterance(r, a, chars=False)
    eb = np.array([c.errors for c, _ in per_b], dtype=np.float64)
    ea = np.array([c.errors for c, _ in per_a], dtype=np.float64)
    n_ref = np.array([c.ref_len for c, _ in per_b], dtype=np.float64)
    if len(r) == 0 or n_ref.sum() == 0:
        raise ValueError("no reference words to score: the held-out set is empty")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(r), size=(n_resamples, len(r)))
    denom = np.maximum(n_ref[idx].sum(1), 1.0)
    diffs = (eb[idx].sum(1) - ea[idx].sum(1)) / denom
    alpha = (1.0 - level) / 2
    return {
        "diff": float((eb.sum() - ea.sum()) / n_ref.sum()),
        "diff_low": float(np.quantile(diffs, alpha)),
        "diff_high": float(np.quantile(diffs, 1 - alpha)),
        "p_not_better": float(np.mean(diffs <= 0)),
        "level": level,
        "n": len(r),
    }


def compare(refs: Sequence[str], before: Sequence[str], after: Sequence[str], *,
            utt_ids: Sequence[str] | None = None, n_resamples: int = 2000, seed: int = 0) -> Comparison:
    """Before/after comparison of one speaker's held-out utterances.

    Utterances whose reference has no words are left out (of the table too), with a warning."""
    r, b = _check_pair(refs, before)
    _, a = _check_pair(refs, after)
    ids = list(utt_ids) if utt_ids is not None else [f"utt{i:03d}" for i in range(len(r))]
    if len(ids) != len(r):
        raise ValueError(f"{len(ids)} utterance ids for {len(r)} references")
    r, b, a, ids = _drop_wordless(r, b, a, ids=ids)
    per_b = _per_utterance(r, b, chars=False)
    per_a = _per_utterance(r, a, chars=False)
    utts = [UtteranceResult(i, ref, hb, ha, cb, ca)
            for i, ref, hb, ha, (cb, _), (ca, _) in zip(ids, r, b, a, per_b, per_a, strict=True)]
    return Comparison(
        utterances=utts,
        wer_before=wer(r, b), wer_after=wer(r, a), cer_before=cer(r, b), cer_after=cer(r, a),
        interval=bootstrap_wer_difference(r, b, a, n_resamples=n_resamples, seed=seed),
    )
