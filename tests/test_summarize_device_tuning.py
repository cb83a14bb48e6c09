"""The Whisper split's tables in docs/results.md (issue 28): the bandwidth goal, the multi-task
table and the privacy table, rendered from result files shaped like the benches' output."""

from __future__ import annotations

from bench.bench_device_tuning_whisper import _goal
from bench.summarize_device_tuning import multitask_lines, privacy_lines, results_md_device_tuning, whisper_bandwidth_lines

MACHINE = {"cpu": "Test CPU", "cores": 2, "torch_threads": 1, "torch": "2.13.0"}


def _row(wer: float, bps: float) -> dict:
    return {"wer": wer, "cer": wer / 2, "bits_per_s": bps}


def _bandwidth() -> dict:
    sets = ("real 150 prompts", "real voice")
    rows = {"raw PCM 16-bit": {s: _row(0.20, 256000) for s in sets},
            "opus 6 kbit/s": {s: _row(0.30, 9000) for s in sets},
            "split k=2 good": {s: _row(0.21, 1500) for s in sets},   # +5 %, 1.5 kbit/s, below Opus: met
            "split k=2 wide": {s: _row(0.21, 2500) for s in sets},   # over 2 kbit/s: missed
            "split k=2 lossy": {s: _row(0.25, 900) for s in sets}}   # +25 %: missed
    return {"machine": MACHINE, "rows": rows, "goal": _goal(rows), "sets": dict.fromkeys(sets, 3), "wall_s": 60,
            "quick": False}


def test_whisper_goal_needs_rate_wer_and_opus():
    goal = _goal(_bandwidth()["rows"])
    assert goal["split k=2 good"]["real voice"]["met"]
    assert not goal["split k=2 wide"]["real voice"]["met"]
    assert not goal["split k=2 lossy"]["real voice"]["met"]
    assert abs(goal["split k=2 good"]["real voice"]["relative_wer"] - 0.05) < 1e-9
    rows = _bandwidth()["rows"]
    rows["opus 6 kbit/s"] = {s: _row(0.205, 9000) for s in rows["opus 6 kbit/s"]}  # Opus now better: missed
    assert not _goal(rows)["split k=2 good"]["real voice"]["met"]


def test_whisper_bandwidth_section():
    lines = whisper_bandwidth_lines(_bandwidth())
    assert "- Met on real voice: split k=2 good at 1.50 kbit/s, WER 21.0 % (+5 % relative to unsplit); " \
           "Opus 6 kbit/s: 30.0 %." in lines
    assert any(line.startswith("- Missed on real voice: split k=2 wide at 2.50 kbit/s") for line in lines)
    assert "| split k=2 lossy | 0.90 | 25.0 % | 0.90 | 25.0 % |" in lines
    assert "(1 torch thread)" in lines[2]
    assert not any("held-out voices" in line for line in lines)  # no card says it was validated


def test_whisper_bandwidth_section_shows_the_held_out_validation_of_the_cards():
    dw = _bandwidth()
    for r in dw["rows"]["split k=2 good"].values():
        r["card"] = {"validation": {"recordings": 160, "kbit_s": 2.131, "wer": 0.382, "unsplit_wer": 0.326,
                                    "disagreement": 0.3571}}
    lines = whisper_bandwidth_lines(dw)
    assert "- split k=2 good: 2.13 kbit/s, WER 38.2 % (unsplit 32.6 %), 35.7 % of the unsplit transcripts' words " \
           "changed" in lines
    assert any("on 160 recordings of the pretraining corpus's held-out voices" in line for line in lines)
    assert not any(line.startswith("- split k=2 wide:") for line in lines)


def _multitask() -> dict:
    spk = {"eer": 0.25, "nearest_speaker_accuracy": 0.5}
    aty = {"held-out voices": {"profile_accuracy": 0.4, "severity_mae": 0.2}}
    return {"machine": MACHINE, "quick": False, "run_s": 120, "atypicality_label": "research output",
            "data": {"test_utterances": 21, "test_audio_s": 50.0, "heldout": ["a-01", "b-01", "c-01"]},
            "compressors": {"Whisper": "2 compressor(s)"},
            "rows": {"Whisper: unsplit": {"asr_wer": 0.3},
                     "Whisper: c": {"split_layer": 2, "joint": False, "bits_per_s": 1200.0, "asr_wer": 0.32,
                                    "speaker": spk, "atypicality": aty},
                     "Whisper: c-joint": {"split_layer": 2, "joint": True, "bits_per_s": 1250.0, "asr_wer": 0.33,
                                          "speaker": spk, "atypicality": aty,
                                          "joint_heads": {"speaker": {"eer": 0.1, "nearest_speaker_accuracy": 0.9},
                                                          "atypicality": {"profile_accuracy": 0.7,
                                                                          "severity_mae": 0.1}}}}}


def test_multitask_table():
    lines = multitask_lines(_multitask())
    assert "| Whisper: unsplit | | 30.0 % | | | | | |" in lines
    assert "| Whisper: c | 1.20 | 32.0 % | 0.250 | 50 % | 40 % | 0.200 |  |" in lines
    assert "| Whisper: c-joint | 1.25 | 33.0 % | 0.250 | 50 % | 40 % | 0.200 | 0.100, 90 %, 70 %, 0.100 |" in lines
    assert lines.index("| Whisper: unsplit | | 30.0 % | | | | | |") < lines.index(
        "| Whisper: c | 1.20 | 32.0 % | 0.250 | 50 % | 40 % | 0.200 |  |")
    pair = next(line for line in lines if line.startswith("- c-joint against c "))
    assert "(1.25 against 1.20 kbit/s): ASR WER +1.0 points, speaker EER +0.000" in pair


def _privacy() -> dict:
    def probe(acc):
        return {"best": {"accuracy": acc, "chance": 0.125}, "probe": "mean+std MLP"}

    split = {"model": "whisper-tiny.en", "compressor": {"name": "c", "note": "", "split_layer": 2},
             "probes": {"wire symbols": probe(0.5), "d-vectors (calibration)": probe(1.0)},
             "reconstruction": {"original audio": {"wer": 0.2, "cer": 0.1},
                                "inverse model from the wire symbols -> Griffin-Lim": {"wer": 0.9, "cer": 0.7}}}
    return {"machine": MACHINE, "quick": False, "run_s": 300, "utterances": 112, "speakers": list("abcdefgh"),
            "splits": {"Whisper": split}}


def test_privacy_table():
    lines = privacy_lines(_privacy())
    assert "| wire symbols | 50 % | 12 % | mean+std MLP |" in lines
    assert "| d-vectors (calibration) | 100 % | 12 % | mean+std MLP |" in lines
    assert "| inverse model from the wire symbols -> Griffin-Lim | 90.0 % | 70.0 % |" in lines


def test_section_leaves_out_quick_runs():
    store = {"device_tuning_cpu": None, "device_tuning_whisper_cpu": {**_bandwidth(), "quick": True},
             "device_tuning_multitask_cpu": _multitask(), "device_tuning_privacy_cpu": None}
    out = results_md_device_tuning(store.get)
    assert "Not measured yet" in out  # the built-in table is missing, and nothing else is claimed
    store["device_tuning_cpu"] = {"machine": MACHINE, "rows": {"raw PCM 16-bit": {"held-out voices": _row(0.5, 256e3)}},
                                  "device_cost": {}}
    out = results_md_device_tuning(store.get)
    assert "### Joint vs ASR-only compressor, every task" in out
    assert "### Whisper tiny.en: bandwidth against WER" not in out  # a --quick run's numbers mean nothing


def test_the_privacy_table_measures_the_shipped_compressor(tmp_path, monkeypatch):
    """Derived operating points and joint compressors sit beside the shipped one in the cache; the
    privacy table measures the stream a user's device sends: the shipped compressor's."""
    from bench.bench_device_tuning_multitask import _privacy_compressor

    monkeypatch.setattr("workbench.device_tuning.compressor.SHIPPED_DIR", tmp_path)
    comps = dict.fromkeys(["m-k2-16x3s2-ft", "m-k2-16x3s2-joint", "m-k2-16x3s2", "m-k2-16x2s2"])
    assert _privacy_compressor(comps, "m") == "m-k2-16x3s2-ft"  # nothing shipped: the first ASR-only one
    (tmp_path / "m-k2-16x3s2.safetensors").write_bytes(b"")
    assert _privacy_compressor(comps, "m") == "m-k2-16x3s2"
    assert _privacy_compressor({"m-k2-16x3s2-joint": None}, "m") == "m-k2-16x3s2-joint"  # only a joint one


def test_only_compressors_are_read_from_the_recipe_folder(tmp_path):
    """A joint run leaves its heads and every run its checkpoint beside the compressor: the benches
    read the compressors only (a heads file once stopped the bandwidth bench)."""
    from bench.bench_device_tuning import compressor_files

    for name in ("m-k2-16x3s2", "m-k2-16x3s2.ckpt", "m-k2-16x3s2-joint", "m-k2-16x3s2-joint.heads",
                 "m-k2-16x3s2-joint.ckpt", "other-k2-16x3s2"):
        (tmp_path / f"{name}.safetensors").write_bytes(b"")
    assert [p.name for p in compressor_files(tmp_path, "m")] == ["m-k2-16x3s2-joint.safetensors",
                                                                 "m-k2-16x3s2.safetensors"]
