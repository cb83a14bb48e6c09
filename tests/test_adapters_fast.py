"""The cheap serving paths of the linear adapter families (LoRA, vector) give the same outputs as the plain ones.

- a one-speaker batch served from a cached merged copy of the weights (swapped in for the batch);
- LoRA layers that read the same input sharing one shrink (q/k/v; cross-attention k/v across decoder layers);
- the decoder's cross-attention keys/values (LoRA included) computed once per utterance when decoding.

On a tiny random Whisper (encoder and decoder) and the built-in architecture.
"""

from __future__ import annotations

import pytest
import torch

from workbench.adapters import LoRAConfig, VectorConfig, inject
from workbench.adapters.fused import FusedShrink
from workbench.errors import AdapterError

from _models import noise_waves, tiny_backend

pytestmark = pytest.mark.filterwarnings("ignore")

TEXTS = ["hello there", "yes please", "good morning", "thank you"]


def _randomize(adapted, seed: int = 1, scale: float = 0.2) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapted.adapters.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def _teacher_forced(backend, batch) -> torch.Tensor:
    enc, _ = backend.encode(batch)
    dec_in, _ = backend.decoder_io(["good morning"] * batch.features.shape[0])  # one text: no padding
    hidden = backend.model.model.decoder(input_ids=dec_in, encoder_hidden_states=enc).last_hidden_state
    return backend.model.proj_out(hidden)


def _scores(backend, batch, adapted, speakers) -> torch.Tensor:
    with torch.no_grad(), adapted.route(speakers):
        return _teacher_forced(backend, batch)


WHISPER_CASES = {
    "lora": LoRAConfig(rank=4, decoder=True),
    "lora-top1": LoRAConfig(rank=2, decoder=True, top_layers=1),
    "vector-ia3": VectorConfig(decoder=True),
    "vector-flora": VectorConfig(mode="flora", decoder=True),
}


@pytest.mark.parametrize("case", sorted(WHISPER_CASES))
def test_whisper_mixed_batch_equals_each_example_alone(whisper, case) -> None:
    """Encoder, decoder and cross-attention adapted: every example of a mixed batch gets its own speaker's
    outputs (fused shrinks included), and a fresh adapter is the base model."""
    waves = noise_waves(4, seed=2)
    batch = whisper.featurize(waves)
    with torch.no_grad():
        base = _teacher_forced(whisper, batch)
    bank = inject(whisper, WHISPER_CASES[case].replace(num_speakers=5))
    try:
        torch.testing.assert_close(_scores(whisper, batch, bank, [0, 1, 2, 3]), base, atol=1e-6, rtol=0)
        _randomize(bank, scale=0.1)
        speakers = [3, 0, 4, 1]
        mixed = _scores(whisper, batch, bank, speakers)
        assert (mixed - base).abs().max() > 1e-3
        for i, w in enumerate(waves):
            alone = whisper.featurize([w], window=batch.features.shape[1])
            torch.testing.assert_close(_scores(whisper, alone, bank, [speakers[i]])[0], mixed[i], atol=1e-5, rtol=1e-5)
    finally:
        bank.remove()


def test_whisper_lora_groups_share_one_shrink_and_match_separate_shrinks(whisper) -> None:
    waves = noise_waves(3, seed=4)
    batch = whisper.featurize(waves)
    bank = inject(whisper, LoRAConfig(rank=4, decoder=True, num_speakers=3))
    _randomize(bank, scale=0.1)
    try:
        groups = {id(g): g for g in bank._fused.values()}.values()
        sizes = sorted(len(g.adapters) for g in groups)
        n_dec = len(whisper.model.model.decoder.layers)
        # q/k/v of every encoder and decoder self-attention, and one group of every cross-attention k and v
        assert sizes == sorted([3] * (whisper.num_layers + n_dec) + [2 * n_dec])
        fused = _scores(whisper, batch, bank, [2, 0, 1])
        saved, bank._fused = bank._fused, {}
        separate = _scores(whisper, batch, bank, [2, 0, 1])
        bank._fused = saved
        torch.testing.assert_close(fused, separate, atol=1e-5, rtol=1e-5)
        bank.train()  # gradients reach every A of a group
        batch.speaker_index = torch.tensor([2, 0, 1])
        bank.loss(batch, TEXTS[:3]).backward()
        assert all(float(a.lora_a.grad[[0, 1, 2]].abs().sum()) > 0 for a in bank.adapters.values())
    finally:
        bank.remove()


def test_fused_shrink_recomputes_for_another_input() -> None:
    """A group's result is reused only for the very tensor it came from, unmodified."""
    from workbench.adapters.lora import LoRAAdapter

    cfg = LoRAConfig(rank=2, num_speakers=2)
    torch.manual_seed(0)
    members = [LoRAAdapter(6, 6, cfg) for _ in range(3)]
    fused = FusedShrink(members)
    x, idx = torch.randn(2, 5, 6), torch.tensor([1, 0])
    with torch.no_grad():
        for m in members:
            torch.testing.assert_close(fused.shrunk(m, x, idx), m.shrink(x, idx))
        y = torch.randn(2, 5, 6)
        torch.testing.assert_close(fused.shrunk(members[1], y, idx), members[1].shrink(y, idx))
        x.mul_(2)  # modified in place: computed again
        torch.testing.assert_close(fused.shrunk(members[2], x, idx), members[2].shrink(x, idx))
        other = torch.tensor([0, 0])
        torch.testing.assert_close(fused.shrunk(members[2], x, other), members[2].shrink(x, other))


@pytest.mark.parametrize("config", [LoRAConfig(rank=4, num_speakers=3), VectorConfig(num_speakers=3),
                                    VectorConfig(mode="flora", num_speakers=3)], ids=["lora", "ia3", "flora"])
def test_one_speaker_batches_use_a_cached_merge_that_follows_the_weights(config) -> None:
    backend = tiny_backend()
    waves = noise_waves(3, seed=5)
    batch = backend.featurize(waves)
    weights = {k: v.clone() for k, v in backend.module.state_dict().items()}
    adapted = inject(backend, config)
    _randomize(adapted, scale=0.1)
    try:
        def run(row: int) -> tuple[torch.Tensor, int]:
            with torch.no_grad(), adapted.route([row] * 3):
                return backend.log_probs(batch)[0], len(adapted._swapped)

        plain, swapped = run(1)
        assert swapped == 0  # first sighting: served unmerged
        merged, swapped = run(1)
        assert swapped == len(adapted._linears) > 0
        torch.testing.assert_close(merged, plain, atol=1e-5, rtol=1e-5)
        with torch.no_grad():  # a training step changes the weights: the cached merge must not be used
            for p in adapted.adapters.parameters():
                p.mul_(1.5)
        changed, swapped = run(1)
        assert swapped == 0 and (changed - plain).abs().max() > 1e-4
        again, swapped = run(1)
        assert swapped > 0
        torch.testing.assert_close(again, changed, atol=1e-5, rtol=1e-5)
        with torch.no_grad(), adapted.route([1] * 3):  # off inside a merged batch: exactly the base model
            assert adapted._swapped
            with adapted.disabled():
                assert not adapted._swapped
                assert all(torch.equal(v, weights[k]) for k, v in backend.module.state_dict().items())
            assert adapted._swapped
        with pytest.raises(RuntimeError, match="boom"), torch.no_grad(), adapted.route([1] * 3):
            assert adapted._swapped
            raise RuntimeError("boom")
        assert all(torch.equal(v, weights[k]) for k, v in backend.module.state_dict().items())  # put back
        adapted.train()  # training: gradients on, never the merged copy
        batch.speaker_index = torch.tensor([1, 1, 1])
        with adapted.route(batch.speaker_index):
            assert not adapted._swapped
        adapted.loss(batch, ["a b", "c d", "e f"]).backward()
        assert all(p.grad is not None and float(p.grad[1].abs().sum()) > 0 for p in adapted.per_speaker_parameters())
    finally:
        adapted.remove()
    assert all(torch.equal(v, weights[k]) for k, v in backend.module.state_dict().items())


def test_gradients_inside_a_merged_batch_are_refused() -> None:
    backend = tiny_backend()
    batch = backend.featurize(noise_waves(2, seed=6))
    adapted = inject(backend, LoRAConfig(rank=2))
    try:
        for _ in range(2):
            with torch.no_grad(), adapted.route(None):
                backend.log_probs(batch)
        with torch.no_grad(), adapted.route(None):
            assert adapted._swapped
            with torch.enable_grad(), pytest.raises(AdapterError, match="merged weights.*gradients enabled"):
                backend.log_probs(batch)
    finally:
        adapted.remove()


def test_decoding_computes_cross_attention_keys_and_values_once(whisper) -> None:
    """transformers caches the cross-attention k/v after the first decoder step; the LoRA hooks on those
    projections therefore run once per utterance (at cache fill), and decoding a mixed batch gives each
    recording its own speaker's transcript."""
    waves = noise_waves(3, seed=7)
    bank = inject(whisper, LoRAConfig(rank=4, decoder=True, num_speakers=3))
    _randomize(bank, scale=0.3)
    calls: dict[str, int] = {}
    hooks = []
    for key, lin in bank._linears.items():
        if "encoder_attn_k_proj" in key or "encoder_attn_v_proj" in key or "self_attn_k_proj" in key:
            hooks.append(lin.register_forward_hook(lambda m, a, o, key=key: calls.__setitem__(key, calls.get(key, 0) + 1)))
    try:
        batch = whisper.featurize(waves)
        with torch.no_grad(), bank.route([2, 0, 1]):
            details = whisper.decode_details(batch)
        steps = max(len(d.tokens) for d in details) + 1
        cross = {k: v for k, v in calls.items() if "encoder_attn" in k}
        assert cross and set(cross.values()) == {1}
        if steps > 1:  # self-attention keys run every step
            assert max(v for k, v in calls.items() if "self_attn" in k) > 1
        for i, (w, s) in enumerate(zip(waves, [2, 0, 1], strict=True)):
            one = whisper.featurize([w], window=batch.features.shape[1])
            with torch.no_grad(), bank.route([s]):
                assert whisper.decode_details(one)[0].tokens == details[i].tokens
    finally:
        for h in hooks:
            h.remove()
        bank.remove()


def test_gathered_rows_are_reused_only_for_the_same_routing_and_weights(whisper) -> None:
    """Each example's factors are gathered once per routed batch (every decoding step reuses them), and
    gathered again when the weights change inside the batch or another routing comes."""
    batch = whisper.featurize(noise_waves(3, seed=8))
    bank = inject(whisper, LoRAConfig(rank=4, decoder=True, num_speakers=3))
    _randomize(bank, scale=0.1)
    try:
        with torch.no_grad(), bank.route([2, 0, 1]):
            first = _teacher_forced(whisper, batch)
            assert torch.equal(_teacher_forced(whisper, batch), first)
            for a in bank.adapters.values():
                a.lora_a.mul_(1.5)
                a.lora_b.mul_(2.0)
            changed = _teacher_forced(whisper, batch)
        fresh = _scores(whisper, batch, bank, [2, 0, 1])
        torch.testing.assert_close(changed, fresh, atol=1e-5, rtol=1e-5)
        assert (changed - first).abs().max() > 1e-3
        other = _scores(whisper, batch, bank, [0, 1, 2])
        for i, s in enumerate([0, 1, 2]):
            alone = whisper.featurize([noise_waves(3, seed=8)[i]], window=batch.features.shape[1])
            torch.testing.assert_close(_scores(whisper, alone, bank, [s])[0], other[i], atol=1e-5, rtol=1e-5)
    finally:
        bank.remove()


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias (Whisper's k_proj)"])
def test_expand_first_linear_equals_the_linear_plus_the_lora_delta(bias) -> None:
    """LoRAAdapter.linear_forward (the expand writes the output, bias folded in; the base matmul adds to it)
    equals ``linear(x) + delta`` per example, and reuses its gathered rows only for the same routing."""
    from workbench.adapters.lora import LoRAAdapter

    torch.manual_seed(0)
    lin = torch.nn.Linear(6, 5, bias=bias)
    lora = LoRAAdapter(6, 5, LoRAConfig(rank=3, num_speakers=4))
    with torch.no_grad():
        lora.lora_b.normal_()
        x, idx = torch.randn(3, 7, 6), torch.tensor([2, 0, 2])
        want = lin(x) + lora.delta(x, idx)
        torch.testing.assert_close(lora.linear_forward(lin, x, idx), want, atol=1e-5, rtol=1e-5)
        for i in range(3):
            alone = lin(x[i:i + 1]) + lora.update(int(idx[i])).matmul(x[i].T).T
            torch.testing.assert_close(lora.linear_forward(lin, x, idx)[i:i + 1], alone, atol=1e-5, rtol=1e-5)
        other = torch.tensor([1, 1, 3])
        torch.testing.assert_close(lora.linear_forward(lin, x, other), lin(x) + lora.delta(x, other),
                                   atol=1e-5, rtol=1e-5)
        lora.lora_b.mul_(2)  # changed weights: gathered again
        torch.testing.assert_close(lora.linear_forward(lin, x, other), lin(x) + lora.delta(x, other),
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("model", ["tiny"])
def test_mixed_batches_expand_first_as_the_hook_path_computes(model, request, monkeypatch) -> None:
    """A routed mixed bank serves its LoRA linears expand first; the outputs equal the forward-hook path's
    (transform_output after the linear) to float32 rounding, with the fused shrinks and without."""
    from workbench.adapters.adapted import Adapted

    backend = request.getfixturevalue("whisper") if model == "whisper" else tiny_backend()
    batch = backend.featurize(noise_waves(4, seed=6))
    bank = inject(backend, LoRAConfig(rank=4, decoder=model == "whisper", num_speakers=3))
    _randomize(bank, seed=4)
    bank.eval()
    speakers = [2, 0, 1, 2]

    def run() -> torch.Tensor:
        with torch.no_grad(), bank.route(speakers):
            return _teacher_forced(backend, batch) if model == "whisper" else backend.log_probs(batch)[0]

    calls = []
    linear_forward = type(next(iter(bank.adapters.values()))).linear_forward
    monkeypatch.setattr(type(next(iter(bank.adapters.values()))), "linear_forward",
                        lambda *a, **k: (calls.append(1), linear_forward(*a, **k))[1])
    first = run()
    assert len(calls) == len(bank.adapters)  # every LoRA linear, once
    with monkeypatch.context() as m:
        m.setattr(Adapted, "_expands", lambda *a: False)
        hooked = run()
    torch.testing.assert_close(first, hooked, atol=1e-5, rtol=1e-5)
    assert float((first - run()).abs().max()) == 0.0  # deterministic, gathered rows reused or not
    bank.remove()
    assert not any("forward" in lin.__dict__ for lin in bank._linears.values())


def test_whisper_serves_in_peft_order_never_merged_copies_or_expand_first(whisper, monkeypatch) -> None:
    """Issue 30: on Whisper the reordered sums parted from PEFT's logits by 2e-4 to 4e-4, so neither the
    cached merged copy (one speaker) nor expand first (mixed) serves it: the delta is added after the frozen
    linear, the base weights stay untouched while routed, and the outputs equal the loop over examples."""
    from workbench.adapters.adapted import REORDERED_SUMS
    from workbench.adapters.lora import LoRAAdapter

    assert whisper.model_type not in REORDERED_SUMS and "ctc" in REORDERED_SUMS
    batch = whisper.featurize(noise_waves(3, seed=5))
    weights = {k: v.clone() for k, v in whisper.model.state_dict().items()}
    bank = inject(whisper, LoRAConfig(rank=4, decoder=True, num_speakers=3))
    _randomize(bank, seed=4)
    bank.eval()
    calls = []
    monkeypatch.setattr(LoRAAdapter, "linear_forward", lambda *a, **k: calls.append(1))
    try:
        with torch.no_grad():
            for _ in range(2):  # the second sighting of one speaker is where a merged copy would come in
                with bank.route([1] * 3):
                    together = _teacher_forced(whisper, batch)
                    assert not bank._swapped
                    assert all(torch.equal(v, weights[k]) for k, v in whisper.model.state_dict().items())
            with bank.route([1, 2, 1]):
                mixed = _teacher_forced(whisper, batch)
        assert not calls
        assert (together - mixed).abs().max() > 1e-4  # the routing matters
        torch.testing.assert_close(mixed[0], together[0], atol=1e-5, rtol=1e-5)
    finally:
        bank.remove()
