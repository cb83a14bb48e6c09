"""transformers backends, offline: tiny random configs saved to a temp dir and loaded back."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

from workbench.adapters import ResidualConfig, inject  # noqa: E402
from workbench.errors import AudioError, WorkbenchError  # noqa: E402
from workbench.models.hf import HFCTCBackend  # noqa: E402
from workbench.models import load_base_model  # noqa: E402
from workbench.models.whisper.backend import WhisperBackend  # noqa: E402

from _models import hf_ctc_dir, hf_whisper_dir, noise_waves  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def ctc_dir(tmp_path_factory):
    return hf_ctc_dir(tmp_path_factory.mktemp("hf") / "w2v")


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory):
    return hf_whisper_dir(tmp_path_factory.mktemp("hf") / "whisper")


@pytest.mark.parametrize("which", ["ctc", "whisper"])
def test_load_transcribe_loss_and_backward_through_an_adapter(which, ctc_dir, whisper_dir) -> None:
    path = ctc_dir if which == "ctc" else whisper_dir
    backend = load_base_model(path)
    assert isinstance(backend, HFCTCBackend if which == "ctc" else WhisperBackend)
    assert len(backend.adapter_sites()) == 2 and backend.linear_layers()
    waves = noise_waves(3, seed=2)
    texts = backend.transcribe(waves)
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    adapted = inject(backend, ResidualConfig(bottleneck=4))
    with torch.no_grad():
        for p in adapted.adapters.parameters():
            p.add_(0.1 * torch.randn_like(p))
    loss = adapted.loss(backend.featurize(waves), ["hello there", "yes", "good morning"])
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in adapted.trainable_parameters())
    assert all(p.grad is None for p in backend.module.parameters())
    assert len(adapted.transcribe(waves[:1])) == 1
    adapted.remove()


def test_ctc_batch_equals_items_and_fingerprint_is_stable(ctc_dir) -> None:
    backend = load_base_model(ctc_dir)
    waves = noise_waves(3, seed=4)
    lp, lens = backend.log_probs(backend.featurize(waves))
    for i, w in enumerate(waves):
        one, _ = backend.log_probs(backend.featurize([w]))
        torch.testing.assert_close(lp[i, : lens[i]], one[0], atol=1e-4, rtol=1e-4)
    assert backend.fingerprint() == load_base_model(ctc_dir).fingerprint()


def test_bad_inputs_and_missing_models_give_clear_messages(ctc_dir, tmp_path) -> None:
    backend = load_base_model(ctc_dir)
    with pytest.raises(AudioError, match="empty"):
        backend.transcribe([])
    with pytest.raises(AudioError, match="0 samples"):
        backend.transcribe([noise_waves(1)[0][:0]])
    with pytest.raises(WorkbenchError, match="download it once") as err:
        load_base_model("nobody-here/not-a-real-model-xyz")
    assert "Traceback" not in str(err.value)
    with pytest.raises(WorkbenchError, match="no model folder"):
        load_base_model(str(tmp_path / "missing-folder.bin"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(WorkbenchError):
        load_base_model(str(tmp_path / "empty"))
