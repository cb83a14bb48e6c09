"""The streaming recognizer (workbench.live): the commit policy, silence and noise, files faster than real
time, the clock and skipping ahead, bounded memory, bad chunks."""

from __future__ import annotations

import os
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from workbench.errors import AudioError
from workbench.live import CaptionEvent, StreamingRecognizer, Word
from workbench.live.policy import LocalAgreement

from _models import tiny_backend
from conftest import make_speechlike

pytest.importorskip("_webrtcvad", reason="live captions need webrtcvad (pip install 'workbench[live]')")

from bench.bench_live import room_noise  # noqa: E402  (one copy: the benchmark's silent room)

SR = 16_000
SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"


def stream(rec: StreamingRecognizer, wav: np.ndarray, chunk_s: float = 0.1) -> list[CaptionEvent]:
    step = int(chunk_s * SR)
    events = []
    for s in range(0, len(wav), step):
        events += rec.feed(wav[s: s + step])
    return events + rec.finish()


def words(s: str, t0: float = 0.0) -> list[Word]:
    return [Word(w, t0 + i, t0 + i + 0.5) for i, w in enumerate(s.split())]


# ---------------------------------------------------------------------------- the commit policy
def test_local_agreement_commits_what_two_decodes_agree_on() -> None:
    p = LocalAgreement()
    script = [("i", []), ("i want", ["i"]), ("want to go", ["want"]), ("to go home", ["to", "go"]),
              ("home now", ["home"])]
    for hyp, expected in script:  # each decode is the tail after the committed words
        committed, partial = p.update(words(hyp))
        assert [w.text for w in committed] == expected
        assert [w.text for w in partial] == hyp.split()[len(expected):]
    assert [w.text for w in p.flush()] == ["now"] and p.pending == []


def test_local_agreement_a_changed_word_is_not_committed_and_reset_drops_it() -> None:
    p = LocalAgreement()
    p.update(words("the cat sat"))
    committed, partial = p.update(words("the hat sat"))  # the second word changed: only "the" agreed
    assert [w.text for w in committed] == ["the"] and [w.text for w in partial] == ["hat", "sat"]
    committed, _ = p.update(words("cat sat"))
    assert committed == []  # "hat" vs "cat": nothing agreed
    p.reset()
    assert p.pending == [] and p.flush() == []


def test_committed_times_come_from_the_newer_decode() -> None:
    p = LocalAgreement()
    p.update([Word("hello", 0.0, 0.4)])
    committed, _ = p.update([Word("hello", 0.1, 0.5), Word("there", 0.5, 0.9)])
    assert committed == [Word("hello", 0.1, 0.5)]


def test_a_whisper_decode_that_starts_the_phrase_over_is_cut() -> None:
    from workbench.live.decoders import _cut_loop

    said = "the grass needs cutting the grass needs cutting".split()  # seen live, forced prefix "the grass needs"
    assert _cut_loop(said, 3) == said[:4]
    assert _cut_loop("call me call me".split(), 2) == ["call", "me"]  # the words just before, again
    for text in ("i i i want to go", "can you come in", "no no"):  # stuttering and short repeats are speech
        assert _cut_loop(text.split(), 1) == text.split()


def test_ctc_alignment_finds_the_frames_of_each_character() -> None:
    from workbench.live.decoders import ctc_align

    blank, a, b = 0, 1, 2
    path = [blank, a, a, blank, a, b, b, blank]  # "aab": the repeated a needs the blank between
    lp = np.full((len(path), 3), np.log(0.05))
    lp[np.arange(len(path)), path] = np.log(0.9)
    assert ctc_align(lp, [a, a, b], blank).tolist() == [1, 4, 5]
    assert ctc_align(lp[:2], [a, a, b], blank) is None  # three labels (and a blank) cannot fit in two frames
    assert ctc_align(lp, [], blank).tolist() == []


# ---------------------------------------------------------------------------- silence and noise
@pytest.mark.parametrize("kind", ["ctc", "whisper"])
def test_silence_and_room_noise_give_no_words(kind, tmp_path) -> None:
    if kind == "ctc":
        backend = tiny_backend()
    else:
        from _models import hf_whisper_dir
        from workbench.models.loading import load_hf_model

        backend = load_hf_model(hf_whisper_dir(tmp_path / "whisper"))
    for wav in (np.zeros(15 * SR, np.float32), room_noise(15, seed=1), room_noise(15, seed=2, level_dbfs=-20)):
        rec = StreamingRecognizer(backend, warmup=False)
        events = stream(rec, wav)
        assert [e for e in events if e.kind == "commit"] == []
        assert rec.decodes == 0  # the detector never heard speech, so nothing was even decoded


def test_whisper_silence_rule_drops_a_decode_its_detector_calls_silence(tmp_path) -> None:
    """Noise that gets past the VAD: Whisper's no-speech probability and mean log-probability decide."""
    from workbench.live.decoders import WhisperStep
    from workbench.models.whisper.backend import Decoded

    class Fake:
        is_seq2seq = True

        def __init__(self, decoded):
            self.decoded = decoded

        def target_ids(self, text):
            return [1] * len(text.split())

        def featurize(self, wavs):
            return wavs

        def decode_details(self, batch, prefixes):
            return [self.decoded]

    voiced = np.ones(10, bool)
    wav = np.zeros(SR, np.float32)
    thanks = Decoded([1, 2], "thank you", avg_logprob=-1.2, no_speech_prob=0.9)
    assert not WhisperStep(Fake(thanks))(wav, [], voiced).speech
    guess = Decoded([1, 2], "thank you", avg_logprob=-2.5, no_speech_prob=0.1)
    assert not WhisperStep(Fake(guess))(wav, [], voiced).speech
    said = Decoded([1, 2], "thank you", avg_logprob=-0.3, no_speech_prob=0.2)
    hyp = WhisperStep(Fake(said))(wav, [], voiced)
    assert hyp.speech and [w.text for w in hyp.words] == ["thank", "you"]
    only_prefix = Decoded([1, 2], "thank you", avg_logprob=-0.1, no_speech_prob=0.0)
    assert not WhisperStep(Fake(only_prefix))(wav, ["thank", "you"], voiced).speech  # nothing new was said


# ---------------------------------------------------------------------------- a file, faster than real time
def _phrases(speaker: str, n: int) -> tuple[list[np.ndarray], list[str]]:
    from workbench.corpus import SpeakerCorpus

    corpus = SpeakerCorpus.open(SAMPLES / speaker)
    utts = corpus.utterances()[:n]
    return [corpus.load_audio(u) for u in utts], [u.prompt for u in utts]


def test_a_file_streamed_faster_than_real_time_matches_the_offline_transcript() -> None:
    from workbench.evaluate import wer
    from workbench.models import load_base_model

    backend = load_base_model("tiny")
    wavs, _ = _phrases("sim-typical-espeak", 6)
    gap = np.zeros(SR, np.float32)
    audio = np.concatenate([gap] + [x for w in wavs for x in (w, gap)])
    offline = " ".join(backend.transcribe(wavs))
    rec = StreamingRecognizer(backend)
    t0 = time.perf_counter()
    events = stream(rec, audio)
    wall = time.perf_counter() - t0
    assert wall < len(audio) / SR  # faster than real time
    commits = [e for e in events if e.kind == "commit"]
    live = " ".join(e.text for e in commits)
    assert wer([offline], [live]) <= 0.25, (offline, live)
    for e in events:
        assert 0 <= e.start_s <= e.end_s <= len(audio) / SR + 1e-6
    for e in commits:
        assert e.emitted_s >= e.end_s - 0.35  # nothing is committed long before it is said (estimated times)
    emitted = [e.emitted_s for e in events]
    assert emitted == sorted(emitted)
    assert abs(rec.now_s - len(audio) / SR) < 1e-6 and rec.status == "keeping up"
    assert events[-1].kind == "partial" and events[-1].text == ""  # the partial line is cleared at the end


def test_reset_starts_a_new_stream_without_reloading_the_model() -> None:
    from workbench.models import load_base_model

    backend = load_base_model("tiny")
    wavs, _ = _phrases("sim-typical-espeak", 2)
    gap = np.zeros(SR, np.float32)
    audio = np.concatenate([gap, wavs[0], gap, wavs[1], gap])
    rec = StreamingRecognizer(backend, warmup=False, realtime=False)
    decode = rec._decode
    first = stream(rec, audio)
    assert [e for e in first if e.kind == "commit"], "the phrases give words (else nothing is tested)"
    rec.feed(audio[: SR + len(wavs[0]) // 2])  # stopped in the middle of a phrase: pending words, a partial line
    assert rec._buf_start is not None
    rec.reset()
    assert rec.now_s == 0 and rec.decodes == 0 and rec.compute_s == 0 and rec.status == "keeping up"
    with pytest.raises(AudioError, match="no audio"):
        rec.audio(0.0, 1.0)  # the old stream's audio is gone
    again = stream(rec, audio)
    assert again == first  # the same events at the same times: nothing of the last stream is left
    assert rec._decode is decode and rec.backend is backend  # the same model, not loaded again
    fresh = stream(StreamingRecognizer(backend, warmup=False, realtime=False), audio)
    assert fresh == first


def test_chunk_length_does_not_matter_much() -> None:
    backend = tiny_backend()
    audio = np.concatenate([np.zeros(SR // 2, np.float32), make_speechlike(3.0, seed=3),
                            np.zeros(SR, np.float32)])
    for chunk_s in (0.01, 0.1, 1.0, 5.0):  # any length, even longer than the file
        events = stream(StreamingRecognizer(backend, warmup=False), audio, chunk_s)
        assert all(e.kind in ("partial", "commit") for e in events)
    whole = StreamingRecognizer(backend, warmup=False)
    assert whole.feed(np.zeros(0, np.float32)) == []


def test_recent_audio_is_kept_for_corrections_and_bounded() -> None:
    rec = StreamingRecognizer(tiny_backend(), keep_s=20.0, warmup=False)
    ramp = (np.arange(40 * SR) % 1000 / 1e4).astype(np.float32)  # quiet: no speech, just known samples
    stream(rec, ramp)
    got = rec.audio(30.0, 31.5)
    assert np.array_equal(got, ramp[30 * SR: int(31.5 * SR)])
    with pytest.raises(AudioError, match="too old"):
        rec.audio(1.0, 2.0)
    with pytest.raises(AudioError, match="no audio"):
        rec.audio(41.0, 42.0)


def test_bad_chunks_are_refused_plainly_and_lose_nothing() -> None:
    rec = StreamingRecognizer(tiny_backend(), warmup=False)
    rec.feed(np.zeros(SR, np.float32))
    with pytest.raises(AudioError, match="NaN"):
        rec.feed(np.full(100, np.nan, np.float32))
    with pytest.raises(AudioError, match="mono"):
        rec.feed(np.zeros((100, 2), np.float32))
    assert rec.now_s == 1.0  # the refused chunks were not taken in
    rec.feed(np.zeros(SR, np.float32))
    assert rec.now_s == 2.0


# ---------------------------------------------------------------------------- falling behind
def test_a_recognizer_that_falls_behind_says_so_and_skips_ahead() -> None:
    rec = StreamingRecognizer(tiny_backend(), step_s=0.2, max_lag_s=0.5, warmup=False)
    real = rec._decode
    calls, took = [], []

    def slow(wav, prefix, voiced, *rest):  # a computer far too slow: every decode takes 0.8 s
        t0 = time.perf_counter()
        calls.append(len(wav))
        time.sleep(0.8)
        out = real(wav, prefix, voiced, *rest)
        took.append(time.perf_counter() - t0)
        return out

    rec._decode = slow
    audio = make_speechlike(6.0, seed=1, lead_s=0.0, tail_s=0.0)
    lags = []
    for s in range(0, len(audio), SR // 10):
        rec.feed(audio[s: s + SR // 10])
        lags.append(rec._busy_until - rec.now_s)
    assert rec.skipped_s > 0 and rec.status.startswith("fell behind, skipped")
    assert max(lags) <= max(took) + 0.1  # never more than one decode behind the audio (a busy CPU slows it)
    assert len(calls) < 6 * 5  # decodes that could not start in time were left out, not queued
    rec.feed(np.zeros(12 * SR, np.float32))  # 10 s of audio later the status is back to normal
    assert rec.status == "keeping up"


def test_a_slow_decode_is_left_out_rather_than_queued() -> None:
    rec = StreamingRecognizer(tiny_backend(), step_s=0.1, max_lag_s=5.0, warmup=False)
    real = rec._decode
    calls = []

    def slowish(wav, prefix, voiced, *rest):  # 0.25 s per decode: slower than the 0.1 s step, faster than the audio
        calls.append(len(wav))
        time.sleep(0.25)
        return real(wav, prefix, voiced, *rest)

    rec._decode = slowish
    audio = make_speechlike(3.0, seed=1, lead_s=0.0, tail_s=0.0)
    for s in range(0, len(audio), SR // 10):
        rec.feed(audio[s: s + SR // 10])
    assert rec.skipped_s == 0 and rec.status == "keeping up"
    assert 5 <= len(calls) <= 14  # about one decode per 0.25 s of audio, not one per 0.1 s step


# ---------------------------------------------------------------------------- memory
def _memory_growth(minutes: float) -> tuple[int, int]:
    """Traced bytes after the first third and at the end of a long stream of phrases and pauses."""
    rec = StreamingRecognizer(tiny_backend(), keep_s=10.0, warmup=False)
    phrase = np.concatenate([make_speechlike(2.5, seed=1), np.zeros(SR, np.float32)])
    n = int(minutes * 60 / (len(phrase) / SR))
    tracemalloc.start()
    try:
        marks = []
        for i in range(n):
            for s in range(0, len(phrase), SR // 5):
                rec.feed(phrase[s: s + SR // 5])
            if i in (n // 3, n - 1):
                marks.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    assert rec.decodes > n  # it really decoded speech all along
    return marks[0], marks[1]


def test_memory_stays_flat_over_a_long_stream() -> None:
    early, late = _memory_growth(1.5)
    assert late - early < 256 * 1024, (early, late)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("WORKBENCH_SLOW") != "1", reason="the 10-minute stream runs with WORKBENCH_SLOW=1")
def test_memory_stays_flat_over_ten_minutes() -> None:
    early, late = _memory_growth(10.0)
    assert late - early < 256 * 1024, (early, late)


def test_speech_without_a_pause_keeps_the_buffer_bounded() -> None:
    rec = StreamingRecognizer(tiny_backend(), max_buffer_s=3.0, step_s=0.5, warmup=False)
    real = rec._decode
    longest = []

    def watch(wav, prefix, voiced, *rest):
        longest.append(len(wav) / SR)
        return real(wav, prefix, voiced, *rest)

    rec._decode = watch
    speech = make_speechlike(12.0, seed=4, lead_s=0.0, tail_s=0.0, amp=0.5)
    stream(rec, speech)
    assert max(longest) <= 3.0 + 0.5 + 0.1  # at most the buffer bound plus one step


def test_a_phrase_starts_where_its_sound_starts_not_where_the_detector_is_sure() -> None:
    from workbench.live.vad import FRAME_S, VoiceActivity

    rng = np.random.default_rng(0)
    room = (1e-3 * rng.standard_normal(2 * SR)).astype(np.float32)  # -60 dBFS
    soft = (0.01 * rng.standard_normal(SR // 2)).astype(np.float32)  # a breathy onset, -40 dBFS: sound, not voice
    vad = VoiceActivity()
    for part in (room, soft, make_speechlike(0.6, seed=1, lead_s=0.0, tail_s=0.0)):
        vad.process(part)
    onset = vad.onset()
    assert onset is not None and onset * FRAME_S >= 2.4  # the detector is sure only once the voice comes
    start = vad.sound_start(onset) * FRAME_S
    assert 1.95 <= start <= 2.1  # the soft sound before it belongs to the phrase; the room does not


def test_a_short_first_piece_waits_for_the_words_after_its_pause() -> None:
    """A lone short word, a 1 s pause, then the rest: decoded as one phrase (the rest gives it context);
    a long phrase before the same pause ends at pause_s as before."""
    rng = np.random.default_rng(2)
    room = (1e-3 * rng.standard_normal(SR)).astype(np.float32)

    def buffer_starts(first_s: float, **options) -> list[int]:
        audio = np.concatenate([room, make_speechlike(first_s, seed=1, lead_s=0.0, tail_s=0.0), room,
                                make_speechlike(1.5, seed=2, lead_s=0.0, tail_s=0.0), room, room])
        rec = StreamingRecognizer(tiny_backend(), warmup=False, realtime=False, **options)
        real, starts = rec._decode, set()

        def watch(wav, prefix, voiced, *rest):
            starts.add(rec._buf_start)
            return real(wav, prefix, voiced, *rest)

        rec._decode = watch
        stream(rec, audio)
        return sorted(starts)

    assert len(buffer_starts(0.4)) == 1  # one phrase: "I ... want to go"
    assert len(buffer_starts(0.4, defer_s=0.0)) == 2  # without the wait: two
    assert len(buffer_starts(2.0)) == 2  # a long phrase ends at the pause


def test_a_new_phrase_never_decodes_the_last_phrase_again() -> None:
    rng = np.random.default_rng(1)
    room = (1e-3 * rng.standard_normal(SR)).astype(np.float32)
    breath = (6e-3 * rng.standard_normal(int(1.1 * SR))).astype(np.float32)  # a noisy pause: sound, not voice
    audio = np.concatenate([room, make_speechlike(1.5, seed=1, lead_s=0.0, tail_s=0.0), breath,
                            make_speechlike(1.5, seed=2, lead_s=0.0, tail_s=0.0), room])
    # defer_s=0: the breath is shorter than pause_s + defer_s, and a short first phrase would wait for the second
    rec = StreamingRecognizer(tiny_backend(), warmup=False, realtime=False, defer_s=0.0)
    real = rec._decode
    spans = []

    def watch(wav, prefix, voiced, *rest):
        spans.append((rec._buf_start, rec._buf_start + len(wav)))
        return real(wav, prefix, voiced, *rest)

    rec._decode = watch
    stream(rec, audio)
    starts = sorted({s for s, _ in spans})
    assert len(starts) >= 2, "two phrases"
    first_end = max(e for s, e in spans if s == starts[0])
    assert all(s >= first_end for s in starts[1:])
