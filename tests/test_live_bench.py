"""bench_live's scoring (phrases, word ends, latency, streaming WER) and its summary, on scripted inputs."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_speechlike

bench_live = pytest.importorskip("bench.bench_live")
summarize_live = pytest.importorskip("bench.summarize_live")

SR = 16_000


def test_stream_layout_and_word_ends_come_from_the_recording() -> None:
    wavs = [make_speechlike(2.0, seed=1, lead_s=0.3, tail_s=0.4), make_speechlike(1.5, seed=2)]
    stream, phrases = bench_live.build_stream(wavs, ["good morning to you", "hello"])
    assert len(stream) == round((1.0 + 2.0 + 1.0 + 1.5 + 1.0) * SR)
    p0, p1 = phrases
    assert p0["start"] == 1.0 and p1["start"] == pytest.approx(4.0)
    assert p0["speech_end"] == pytest.approx(1.0 + 2.0 - 0.4, abs=0.06)  # where the sound stops, not the file
    assert p0["word_ends"][-1] == p0["speech_end"] and p0["word_ends"] == sorted(p0["word_ends"])
    assert len(p0["word_ends"]) == 4 and len(p1["word_ends"]) == 1


def test_latency_is_commit_time_minus_word_end_for_matched_words() -> None:
    phrases = [{"start": 1.0, "end": 3.0, "ref": "good morning", "word_ends": [1.5, 2.6], "speech_end": 2.6},
               {"start": 4.0, "end": 5.0, "ref": "hello", "word_ends": [4.7], "speech_end": 4.7}]
    commits = [("good", 1.1, 1.5, 2.0), ("evening", 1.6, 2.6, 3.4), ("hello", 4.2, 4.7, 5.5)]
    scored = bench_live.score_stream(commits, phrases)
    assert scored["hyps"] == ["good evening", "hello"]
    assert scored["latencies"] == pytest.approx([0.5, 0.8])  # "evening" matches no reference word
    assert scored["last_word_latencies"] == pytest.approx([0.8])


def test_room_noise_is_deterministic_and_at_its_level() -> None:
    a, b = bench_live.room_noise(2.0, seed=3, level_dbfs=-30), bench_live.room_noise(2.0, seed=3, level_dbfs=-30)
    assert np.array_equal(a, b) and a.dtype == np.float32
    assert 10 * np.log10(np.mean(a.astype(np.float64) ** 2)) == pytest.approx(-30, abs=0.1)


def _overall(lat, st, off, rtf, noise):
    return {"latency": {"median": lat, "p90": 2 * lat, "n": 10}, "last_word_latency": {"median": lat, "p90": lat,
            "n": 3}, "streaming_wer": st, "offline_wer": off, "wer_ratio": st / off if off else None, "rtf": rtf,
            "cpu_rtf": rtf, "noise_words": noise}


def test_the_summary_marks_each_acceptance_bound() -> None:
    result = {"model": "whisper-tiny.en", "speakers": ["a"], "gap_s": 1.0, "threads": 2, "noise_s": 60.0,
              "machine": {"cpu": "x", "cores": 2}, "peer_missing": None,
              "systems": {"personal": {"overall": _overall(1.2, 0.20, 0.19, 0.5, {"silence": 0, "noise": 0}),
                                       "speakers": {}},
                          "base": {"overall": _overall(1.0, 0.5, 0.4, 0.4, {"silence": 0, "noise": 2}),
                                   "speakers": {}}}}
    text = "\n".join(summarize_live.live_details(lambda name: result if name == "live_cpu" else None))
    assert text.index("(workbench, base)") < text.index("+ personal model")
    assert "- met: median committed-word latency" in text and "- met: streaming WER <= 1.1x" in text
    result["systems"]["personal"]["overall"] = _overall(2.0, 0.3, 0.2, 1.2, {"silence": 1, "noise": 0})
    text = "\n".join(summarize_live.live_details(lambda name: result if name == "live_cpu" else None))
    assert text.count("MISSED") == 5 and "- met:" not in text
    assert summarize_live.live_details(lambda name: None) == []


def test_a_rerun_keeps_the_peers_rows_and_ours_only_from_the_same_code_and_training_defaults() -> None:
    from bench.bench_live import code_fingerprint, reusable_rows

    now = code_fingerprint()
    assert len(now) == 12 and now == code_fingerprint()
    done = {"peer|a": {"x": 1}, "personal|a": {"code": now, "defaults": "d1"}, "base|a": {"code": "0" * 12},
            "base|b": {}, "base|c": {"code": now}, "personal|b": {"code": now}, "personal|c": {"code": now,
                                                                                              "defaults": "d0"}}
    # a personal row also needs today's training defaults: one without them, or with others, is measured again
    assert sorted(reusable_rows(done, now, "d1")) == ["base|c", "peer|a", "personal|a"]
