"""The naming rule (issue 31: ``sample_rate`` and ``<what>_s``): old public names keep working for one
release with a DeprecationWarning, and files saved under the old names still load."""

from __future__ import annotations

import json
import warnings

import pytest

from workbench._deprecated import renamed_keywords, upgrade_keys
from workbench.defaults import RUN_DEFAULTS
from workbench.errors import TrainingError
from workbench.trainer import TrainConfig, Trainer
from workbench.trainer_events import StartEvent
from workbench.training_run import TrainingRun

pytestmark = pytest.mark.filterwarnings("ignore:the validation set has only")


def test_a_renamed_keyword_warns_and_passes_on_and_both_names_are_refused() -> None:
    @renamed_keywords(old_s="new_s")
    def f(*, new_s: float = 0.0) -> float:
        return new_s

    with pytest.warns(DeprecationWarning, match="'old_s' is now called 'new_s'"):
        assert f(old_s=2.0) == 2.0
    with pytest.raises(TypeError, match="give only new_s="):
        f(old_s=1.0, new_s=2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new name is silent
        assert f(new_s=3.0) == 3.0


def test_train_config_time_limit_keeps_its_old_name_for_a_release() -> None:
    with pytest.warns(DeprecationWarning, match="TrainConfig: 'max_seconds' is now called 'time_limit_s'"):
        config = TrainConfig(max_seconds=12.0)
    assert config.time_limit_s == 12.0 and "max_seconds" not in config.to_dict()
    with pytest.warns(DeprecationWarning):
        assert config.max_seconds == 12.0
    with pytest.warns(DeprecationWarning):
        config.max_seconds = 30.0
    assert config.time_limit_s == 30.0
    with pytest.warns(DeprecationWarning):
        assert RUN_DEFAULTS.max_seconds == RUN_DEFAULTS.time_limit_s == 900.0


def test_train_config_saved_under_the_old_name_loads_silently() -> None:
    saved = json.loads(json.dumps(TrainConfig(time_limit_s=42.0).to_dict()))
    saved["max_seconds"] = saved.pop("time_limit_s")  # as an older version wrote it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = TrainConfig.from_dict(saved)
    assert loaded.time_limit_s == 42.0 and loaded.to_dict() == TrainConfig(time_limit_s=42.0).to_dict()
    assert upgrade_keys({"max_seconds": 1.0, "time_limit_s": 2.0}, {"max_seconds": "time_limit_s"}) == {
        "time_limit_s": 2.0}  # the new key wins


def test_the_start_event_and_the_training_run_read_the_old_name() -> None:
    e = StartEvent(max_steps=5, time_limit_s=60.0, train_utterances=1, valid_utterances=1, parameters={},
                   left_out="")
    with pytest.warns(DeprecationWarning):
        assert e["max_seconds"] == 60.0
    assert "max_seconds" not in dict(e)
    with pytest.warns(DeprecationWarning):
        run = TrainingRun(lambda: None, max_seconds=30.0, clock=lambda: 5.0)
    assert run.time_limit_s == 30.0
    run._on_start({"max_steps": 4, "max_seconds": 20.0})  # an old caller's dict event
    assert run.time_limit_s == 20.0 and run.progress().time_limit_s == 20.0
    with pytest.warns(DeprecationWarning):
        assert run.max_seconds == 20.0
    with pytest.warns(DeprecationWarning):
        assert run.progress().max_seconds == 20.0
    with pytest.warns(DeprecationWarning):
        assert run.training_seconds() == run.training_s()


def test_a_checkpoint_saved_with_the_old_name_resumes(tmp_path) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from workbench.adapters import ResidualConfig
    from workbench.dataset import Example

    from _models import noise_waves, tiny_backend

    def trainer() -> Trainer:
        train = [Example(w, "turn on the light", 0, f"u{i}") for i, w in enumerate(noise_waves(4, 0))]
        valid = [Example(w, "good morning", 0, f"v{i}") for i, w in enumerate(noise_waves(2, 1))]
        return Trainer(tiny_backend(), train, valid, TrainConfig(
            adapter=ResidualConfig(bottleneck=4), max_steps=2, time_limit_s=60.0, batch_size=2, eval_every=1,
            min_utterances=2, patience=0))

    path = trainer().save_checkpoint(tmp_path / "new.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["trainer"])
    meta["config"]["max_seconds"] = meta["config"].pop("time_limit_s")  # as an older version saved it
    save_file(load_file(str(path)), str(tmp_path / "old.safetensors"), metadata={"trainer": json.dumps(meta)})
    resumed = trainer()
    resumed.load_checkpoint(tmp_path / "old.safetensors")  # no "different training settings" error
    assert resumed.step == meta["step"]
    meta["config"]["max_seconds"] = 61.0  # a different ceiling is still a different run
    save_file(load_file(str(path)), str(tmp_path / "other.safetensors"), metadata={"trainer": json.dumps(meta)})
    with pytest.raises(TrainingError, match="different training settings"):
        trainer().load_checkpoint(tmp_path / "other.safetensors")


def test_audio_length_limits_keep_their_old_names_for_a_release() -> None:
    import numpy as np

    from workbench.audio import Recording, check_quality, load_audio, resample, trim_silence
    from workbench.takes import ChunkAssembler, TakeProtocol

    pcm = b"\x00\x10" * 16_000 * 3  # 3 s of raw 16-bit PCM
    with pytest.warns(DeprecationWarning, match="'max_seconds' is now called 'max_s'"):
        assert load_audio(pcm, sample_rate=16_000, max_seconds=None).shape == (48_000,)
    x = np.zeros(16_000, dtype=np.float32)
    with pytest.warns(DeprecationWarning):
        report = check_quality(x, 16_000, min_seconds=2.0)
    assert any(p.code == "too_short" for p in report.problems)
    with pytest.warns(DeprecationWarning):
        assert Recording(x, 16_000).quality(max_seconds=0.5).ok is False
    with pytest.warns(DeprecationWarning, match="'target_sr' is now called 'target_sample_rate'"):
        assert Recording(x, 16_000).resampled(target_sr=8_000).sample_rate == 8_000
    with pytest.warns(DeprecationWarning):
        assert resample(x, orig_sr=16_000, target_sr=8_000).shape == (8_000,)
    with pytest.warns(DeprecationWarning):
        assert trim_silence(x + 1e-3, pad_seconds=0.0).size <= x.size
    with pytest.warns(DeprecationWarning):
        assert ChunkAssembler("t", max_seconds=1.0).max_samples == 16_000
    with pytest.warns(DeprecationWarning):
        protocol = TakeProtocol(None, max_seconds=5.0)
    assert protocol.max_s == 5.0
    with pytest.warns(DeprecationWarning):
        protocol.max_seconds = 7.0  # the recorders used to set it by this name
    assert protocol.max_s == 7.0


def test_the_simulation_measures_and_the_export_window_keep_their_old_names() -> None:
    import numpy as np

    from workbench.device_tuning.client import summary_line
    from workbench.export.card import window_s, window_seconds
    from workbench.simulate import effects

    x = (0.3 * np.sin(2 * np.pi * 200 * np.arange(8_000) / 8_000)).astype(np.float32)
    with pytest.warns(DeprecationWarning, match="'sr' is now called 'sample_rate'"):
        old = effects.duration_s(x, sr=8_000)
    assert old == effects.duration_s(x, sample_rate=8_000) == pytest.approx(1.0, abs=0.05)
    assert effects.duration_s(x) == pytest.approx(0.5, abs=0.05)  # the default rate is 16 kHz
    with pytest.warns(DeprecationWarning):
        assert window_seconds(3.0) == window_s(3.0) == 4
    with pytest.warns(DeprecationWarning):
        assert summary_line(1000, audio_seconds=4.0) == summary_line(1000, audio_s=4.0)


def test_the_kernel_recorder_keeps_its_old_keywords() -> None:
    from workbench.ui.kernel_recorder import InputDevice, KernelRecorder

    with pytest.warns(DeprecationWarning):
        rec = KernelRecorder(devices=[InputDevice(0, "fake mic")], stream_factory=object, max_seconds=2.0,
                             block_seconds=0.2)
    assert (rec.max_s, rec.block_s) == (2.0, 0.2)
    with pytest.warns(DeprecationWarning):
        assert rec.max_seconds == 2.0


def test_the_browser_recorders_keep_their_old_names() -> None:
    pytest.importorskip("anywidget")
    from workbench.ui.recorder import BrowserRecorder

    with pytest.warns(DeprecationWarning):
        mic = BrowserRecorder(max_seconds=30.0, chunk_seconds=0.5)
    assert (mic.max_s, mic.chunk_s, mic.protocol.max_s) == (30.0, 0.5, 30.0)
    with pytest.warns(DeprecationWarning):
        mic.max_seconds = 20.0
    assert mic.max_s == mic.protocol.max_s == 20.0
    pytest.importorskip("panel")
    from workbench.app_pages.recorder import PanelRecorder

    with pytest.warns(DeprecationWarning):
        rec = PanelRecorder(max_seconds=12.0)
    assert rec.max_s == rec.protocol.max_s == 12.0
