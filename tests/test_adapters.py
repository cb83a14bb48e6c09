"""One table of adapter cases, run through common property checks (PEFT-style).

Backends: the built-in architecture with small random weights (always), and a
tiny random transformers wav2vec2-CTC (when ``workbench.models.hf`` exists).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.adapters import (
    ConvAdapterConfig,
    HRAConfig,
    LoRAConfig,
    ResidualConfig,
    SubmodelBank,
    VectorConfig,
    inject,
    load_submodel,
)
from workbench.errors import AdapterError
from workbench.models.tiny import TinyBackend, TinyConfig, TinyConformerCTC

from _models import hf_ctc_dir, noise_waves, tiny_backend

pytestmark = pytest.mark.filterwarnings("ignore:.*attention mask.*")

CASES = {
    "residual": ResidualConfig(bottleneck=8),
    "conv": ConvAdapterConfig(groups=4),
    "lora-all": LoRAConfig(rank=4),
    "lora-attention": LoRAConfig(rank=2, targets="attention"),
    "hra-linear": HRAConfig(controller_dim=8),
    "hra-ffn": HRAConfig(controller_dim=8, head="ffn", ffn_hidden=8),
    "hra-embedding": HRAConfig(controller_dim=8, space="embedding", embed_dim=4),
    "hra-top2": HRAConfig(controller_dim=8, top_layers=2),
    "lora-top1": LoRAConfig(rank=2, top_layers=1),
    "vector-ia3": VectorConfig(),
    "vector-flora": VectorConfig(mode="flora"),
    "vector-top1": VectorConfig(top_layers=1),
}
MERGEABLE = ("lora", "vector")


def _tiny_backend(seed: int = 0) -> TinyBackend:
    return tiny_backend(seed)


BACKENDS = ["tiny", "hf-wav2vec2"]


@pytest.fixture(scope="module")
def _hf_dir(tmp_path_factory):
    pytest.importorskip("transformers")
    return hf_ctc_dir(tmp_path_factory.mktemp("hf") / "w2v")


@pytest.fixture(params=BACKENDS)
def backend(request):
    if request.param == "tiny":
        return _tiny_backend()
    from workbench.models import load_base_model

    return load_base_model(request.getfixturevalue("_hf_dir"))


def _waves(n: int, seed: int = 0) -> list[np.ndarray]:
    return noise_waves(n, seed)


def _randomize(adapted, seed: int = 1, scale: float = 0.2) -> None:
    """Move every adapter weight away from its (identity) initialization."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapted.adapters.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def _logits(backend, waves, adapted=None, speakers=None):
    batch = backend.featurize(waves)
    if adapted is None:
        return backend.log_probs(batch)[0]
    with adapted.route(speakers):
        return backend.log_probs(batch)[0]


@pytest.fixture(params=sorted(CASES))
def case(request):
    return request.param


def test_fresh_adapter_is_identity(backend, case) -> None:
    waves = _waves(3)
    base = _logits(backend, waves)
    adapted = inject(backend, CASES[case])
    try:
        torch.testing.assert_close(_logits(backend, waves, adapted), base, atol=1e-6, rtol=0)
    finally:
        adapted.remove()


def test_disable_gives_base_output(backend, case) -> None:
    waves = _waves(2)
    base = _logits(backend, waves)
    adapted = inject(backend, CASES[case])
    _randomize(adapted)
    try:
        assert not torch.allclose(_logits(backend, waves, adapted), base, atol=1e-4)
        with adapted.disabled():
            torch.testing.assert_close(_logits(backend, waves), base, atol=1e-6, rtol=0)
    finally:
        adapted.remove()
    torch.testing.assert_close(_logits(backend, waves), base, atol=1e-6, rtol=0)  # removal restores the base


def test_save_load_round_trip(backend, case, tmp_path) -> None:
    waves = _waves(2)
    adapted = inject(backend, CASES[case])
    _randomize(adapted)
    expected = _logits(backend, waves, adapted)
    path = adapted.save(tmp_path / "spk.safetensors", speaker_ids=["spk-1"], metrics={"wer_after": 0.1})
    adapted.remove()
    loaded, meta = load_submodel(backend, path)
    try:
        assert meta["speaker_ids"] == ["spk-1"] and meta["metrics"] == {"wer_after": 0.1}
        assert meta["base_fingerprint"] == backend.fingerprint()
        torch.testing.assert_close(_logits(backend, waves, loaded), expected, atol=0, rtol=0)
    finally:
        loaded.remove()


def test_merge_equals_unmerged_where_supported(backend, case) -> None:
    waves = _waves(2)
    adapted = inject(backend, CASES[case])
    _randomize(adapted, scale=0.05)
    try:
        unmerged = _logits(backend, waves, adapted)
        if not case.startswith(MERGEABLE):
            with pytest.raises(AdapterError, match="cannot be merged"):
                adapted.merge()
            return
        adapted.merge()
        torch.testing.assert_close(_logits(backend, waves, adapted), unmerged, atol=1e-5, rtol=1e-5)
        adapted.unmerge()
        torch.testing.assert_close(_logits(backend, waves, adapted), unmerged, atol=1e-6, rtol=0)
    finally:
        adapted.remove()


def test_only_adapter_parameters_receive_gradients(backend, case) -> None:
    waves = _waves(2)
    adapted = inject(backend, CASES[case])
    _randomize(adapted, scale=0.05)
    try:
        adapted.train()
        loss = adapted.loss(backend.featurize(waves), ["hello there", "good morning"])
        loss.backward()
        assert all(p.grad is None for p in backend.module.parameters())
        grads = [p.grad for p in adapted.trainable_parameters()]
        assert grads and all(g is not None for g in grads)
        assert any(float(g.abs().sum()) > 0 for g in grads)
    finally:
        adapted.remove()


@pytest.mark.parametrize("targets", ["all", "attention"])
def test_merged_bank_serves_only_the_merged_row(targets) -> None:
    """After merge(s) only row s is in the weights: a mixed batch must be refused (PEFT raises too)."""
    backend = _tiny_backend()
    waves = _waves(4)
    adapted = inject(backend, LoRAConfig(rank=2, targets=targets, num_speakers=4))
    _randomize(adapted)
    try:
        row2 = _logits(backend, waves, adapted, [2, 2, 2, 2])
        mixed = _logits(backend, waves, adapted, [0, 1, 2, 3])
        adapted.merge(2)
        with pytest.raises(AdapterError, match=r"row 2 is merged.*rows \[0, 1, 3\].*unmerge"):
            _logits(backend, waves, adapted, [0, 1, 2, 3])
        torch.testing.assert_close(_logits(backend, waves, adapted, [2, 2, 2, 2]), row2, atol=1e-5, rtol=1e-5)
        with adapted.disabled():  # adapters off: any routing is the base model
            _logits(backend, waves, adapted, [0, 1, 2, 3])
        with pytest.raises(AdapterError, match="already merged"):
            adapted.merge(1)
        with pytest.raises(AdapterError, match="rows 0 to 3"):
            adapted.unmerge().merge(4)
        adapted.unmerge()
        torch.testing.assert_close(_logits(backend, waves, adapted, [0, 1, 2, 3]), mixed, atol=0, rtol=0)
    finally:
        adapted.remove()


def test_disabled_while_merged_is_exactly_the_base_model() -> None:
    backend = _tiny_backend()
    waves = _waves(3)
    weights = {k: v.clone() for k, v in backend.module.state_dict().items()}
    base = _logits(backend, waves)
    adapted = inject(backend, LoRAConfig(rank=4, num_speakers=2))
    _randomize(adapted, scale=0.5)
    try:
        personal = _logits(backend, waves, adapted, [1, 1, 1])
        assert (personal - base).abs().max() > 0.1
        adapted.merge(1)
        with adapted.disabled():
            assert torch.equal(_logits(backend, waves, adapted, [1, 1, 1]), base)  # bit for bit
        torch.testing.assert_close(_logits(backend, waves, adapted, [1, 1, 1]), personal, atol=2e-4, rtol=1e-4)
        adapted.disable()
        assert torch.equal(_logits(backend, waves), base)
        with pytest.raises(AdapterError, match="enable"):
            adapted.unmerge().disable().merge(1)
        adapted.enable().merge(1)
        adapted.disable()
        adapted.unmerge()  # while disabled: the base weights are already in place
        adapted.enable()
        torch.testing.assert_close(_logits(backend, waves, adapted, [1, 1, 1]), personal, atol=1e-6, rtol=0)
        adapted.merge(1).unmerge()
        now = backend.module.state_dict()
        assert all(torch.equal(now[k], v) for k, v in weights.items())  # unmerge restores bit for bit
    finally:
        adapted.remove()
    assert torch.equal(_logits(backend, waves), base)


@pytest.mark.parametrize("repeat", [False, True])
def test_bank_mixed_batch_equals_each_example_alone(backend, case, repeat: bool) -> None:
    n_speakers = 16
    waves = _waves(16, seed=3)  # different lengths: padding inside the batch
    speakers = [i % 5 for i in range(16)] if repeat else list(range(16))
    bank = inject(backend, CASES[case].replace(num_speakers=n_speakers))
    _randomize(bank, seed=7, scale=0.05)
    try:
        batch = backend.featurize(waves)
        with bank.route(speakers):
            mixed, lens = backend.log_probs(batch)
        for i, w in enumerate(waves):
            with bank.route([speakers[i]]):
                alone, alen = backend.log_probs(backend.featurize([w]))
            assert int(alen[0]) == int(lens[i])
            torch.testing.assert_close(mixed[i, : lens[i]], alone[0], atol=1e-5, rtol=1e-5)
    finally:
        bank.remove()


def test_absent_speaker_gets_exactly_zero_gradient(backend, case) -> None:
    bank = inject(backend, CASES[case].replace(num_speakers=4))
    _randomize(bank, scale=0.05)
    try:
        bank.train()
        batch = backend.featurize(_waves(3))
        batch.speaker_index = torch.tensor([0, 2, 2])
        bank.loss(batch, ["a b", "c d", "e f"]).backward()
        per_speaker = bank.per_speaker_parameters()
        assert per_speaker
        for p in per_speaker:
            assert p.grad is not None
            assert float(p.grad[1].abs().max()) == 0.0 and float(p.grad[3].abs().max()) == 0.0
            assert float(p.grad[[0, 2]].abs().max()) > 0.0
    finally:
        bank.remove()


def test_wrong_base_model_is_refused_with_both_fingerprints(tmp_path) -> None:
    a, b = _tiny_backend(0), _tiny_backend(1)
    adapted = inject(a, ResidualConfig(bottleneck=4))
    path = adapted.save(tmp_path / "x.safetensors", speaker_ids=["s"])
    with pytest.raises(AdapterError, match=a.fingerprint()[:12]) as err:
        load_submodel(b, path)
    assert b.fingerprint()[:12] in str(err.value)


def test_bad_files_and_layouts_give_clear_errors(tmp_path) -> None:
    backend = _tiny_backend()
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(AdapterError, match="not a readable Submodel"):
        load_submodel(backend, tmp_path / "junk.safetensors")
    with pytest.raises(AdapterError, match="no Submodel file"):
        load_submodel(backend, tmp_path / "missing.safetensors")
    adapted = inject(backend, ResidualConfig(bottleneck=4))
    path = adapted.save(tmp_path / "r4.safetensors", speaker_ids=["s"])
    adapted.remove()
    other = inject(backend, ResidualConfig(bottleneck=8))
    with pytest.raises(AdapterError, match="settings"):
        other.load(path)
    with pytest.raises(AdapterError, match="already has adapters"):
        inject(backend, ResidualConfig())
    with pytest.raises(AdapterError, match="out of range"):
        with other.route([3]):
            pass
    other.remove()
    with pytest.raises(AdapterError, match="bottleneck"):
        ResidualConfig(bottleneck=0)
    with pytest.raises(AdapterError, match="odd"):
        ConvAdapterConfig(kernel=4)


def test_submodel_bank_files_add_remove_export(tmp_path) -> None:
    backend = _tiny_backend()
    cfg = HRAConfig(controller_dim=8, train_controller=False)
    torch.manual_seed(5)
    one = inject(backend, cfg)
    controller = {k: v.clone() for k, v in one.state_dict().items() if k not in one.per_speaker_keys()}
    paths = []
    for i in range(3):
        _randomize(one, seed=10 + i)
        one.load_state_dict({**one.state_dict(), **controller})  # shared controller stays identical
        paths.append(one.save(tmp_path / f"s{i}.safetensors", speaker_ids=[f"spk-{i}"]))
    waves = _waves(3, seed=9)
    singles = []
    for p in paths:
        one.load(p)
        singles.append(one.transcribe([waves[0]]))
    one.remove()
    bank = SubmodelBank.from_files(backend, paths)
    assert bank.speaker_ids == ["spk-0", "spk-1", "spk-2"]
    assert bank.transcribe([waves[0]] * 3, ["spk-0", "spk-1", "spk-2"]) == [s[0] for s in singles]
    out = bank.export_speaker("spk-1", tmp_path / "exported.safetensors")
    bank.remove_speaker("spk-1")
    assert bank.speaker_ids == ["spk-0", "spk-2"]
    assert bank.transcribe([waves[0]], ["spk-2"]) == singles[2]
    assert bank.add_speakers(out) == ["spk-1"]
    assert bank.transcribe([waves[0]], ["spk-1"]) == singles[1]
    with pytest.raises(AdapterError, match="not in this bank"):
        bank.index(["nobody"])
    with pytest.raises(AdapterError, match="already in the bank"):
        bank.add_speakers(out)


def test_banks_refuse_different_shared_weights(tmp_path) -> None:
    backend = _tiny_backend()
    paths = []
    for i in range(2):
        torch.manual_seed(i)  # different controller initializations
        a = inject(backend, HRAConfig(controller_dim=8))
        paths.append(a.save(tmp_path / f"h{i}.safetensors", speaker_ids=[f"s{i}"]))
        a.remove()
    with pytest.raises(AdapterError, match="different shared weights"):
        SubmodelBank.from_files(backend, paths)


def test_parameter_report_on_the_built_in_size() -> None:
    torch.manual_seed(0)
    backend = TinyBackend(TinyConformerCTC(TinyConfig()).eval())
    reports = {}
    for name, cfg in {"residual": ResidualConfig(), "conv": ConvAdapterConfig(), "lora": LoRAConfig(),
                      "hra": HRAConfig()}.items():
        adapted = inject(backend, cfg)
        reports[name] = adapted.parameter_report()
        adapted.remove()
    hra = reports["hra"]
    assert hra["per_speaker"] == min(r["per_speaker"] for r in reports.values())
    assert hra["per_speaker_percent"] < 0.5
    assert hra["shared"] > 0 and reports["residual"]["shared"] == 0
    assert all(r["base"] == backend.num_parameters() for r in reports.values())


def test_warm_start_from_an_embedding_bank_trains_only_z(tmp_path) -> None:
    backend = _tiny_backend()
    bank = inject(backend, HRAConfig(controller_dim=8, space="embedding", embed_dim=4, num_speakers=3))
    _randomize(bank, seed=2)
    path = bank.save(tmp_path / "bank.safetensors", speaker_ids=["a", "b", "c"])
    z_mean = bank.state_dict()["hra.z"].mean(0)
    bank.remove()
    from workbench.adapters import warm_start

    new = warm_start(backend, path)
    assert [p.shape for p in new.trainable_parameters()] == [torch.Size([1, 4])]
    torch.testing.assert_close(new.state_dict()["hra.z"][0], z_mean)
    new.remove()
    other = inject(backend, ResidualConfig(bottleneck=2))
    p2 = other.save(tmp_path / "res.safetensors", speaker_ids=["x"])
    other.remove()
    with pytest.raises(AdapterError, match="embedding space"):
        warm_start(backend, p2)
