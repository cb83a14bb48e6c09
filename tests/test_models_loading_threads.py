"""Two base-model loads at once in two threads (issue 24, B2: two Train clicks in the app both failed
with "Cannot copy out of meta tensor", and every later load in the process failed too)."""

from __future__ import annotations

import threading

import pytest

transformers = pytest.importorskip("transformers")

from workbench.models import load_base_model  # noqa: E402
from workbench.models.whisper.backend import WhisperBackend  # noqa: E402

from _models import hf_whisper_dir  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")


def _load_together(name: str, n: int = 2) -> tuple[list, list[str]]:
    """``n`` threads call ``load_base_model(name)`` at the same moment; (backends, errors)."""
    start = threading.Barrier(n)
    backends, errors = [], []

    def load() -> None:
        start.wait()
        try:
            backends.append(load_base_model(name))
        except Exception as err:  # noqa: BLE001 - the test reports every failure
            errors.append(f"{type(err).__name__}: {err}"[:300])

    threads = [threading.Thread(target=load) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return backends, errors


def test_two_whisper_loads_at_once_both_succeed_and_leave_transformers_intact(tmp_path) -> None:
    folder = hf_whisper_dir(tmp_path / "whisper")
    tie_weights = transformers.PreTrainedModel.tie_weights
    for _ in range(3):  # unserialized, the first round already failed (5 of 5 in the probe)
        backends, errors = _load_together(folder)
        assert errors == []
        assert len(backends) == 2 and all(isinstance(b, WhisperBackend) for b in backends)
    # the process-wide function transformers swaps during a load is back in place ...
    assert transformers.PreTrainedModel.tie_weights is tie_weights
    # ... so the decoder's output projection is still tied to the embeddings, and a later load works
    backend = load_base_model(folder)
    model = backend.model
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()


def test_the_built_in_model_loads_in_two_threads_at_once() -> None:
    backends, errors = _load_together("tiny", n=3)
    assert errors == [] and len(backends) == 3
    assert len({b.fingerprint() for b in backends}) == 1
