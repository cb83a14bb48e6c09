"""The supernet (TODM): slicing, extraction, sizes as base models, the sandwich step, distillation losses."""

from __future__ import annotations

import copy

import pytest
import torch

from workbench.errors import AdapterError, ModelSizeError, WorkbenchError
from workbench.models.supernet.distill import alpha_divergence, f_divergence, kl_divergence
from workbench.models.supernet.sandwich import SandwichConfig, sample_choices, sandwich_step
from workbench.models.supernet.model import DEFAULT_SPACE, SearchSpace, SubnetChoice, Supernet
from workbench.models.tiny import TinyConfig, TinyConformerCTC

SMALL = SubnetChoice(2, 16, 1, 8)
LARGE = SubnetChoice(3, 48, 3, 24)
SPACE = SearchSpace(depths=(2, 3), ffns=(16, 32, 48), heads=(1, 2, 3), convs=(8, 16, 24),
                    sizes=(("small", SMALL), ("large", LARGE)))


def _supernet(seed: int = 0, dropout: float = 0.1, **options) -> Supernet:
    torch.manual_seed(seed)
    cfg = TinyConfig(d_model=24, num_layers=3, num_heads=3, ff_mult=2, conv_kernel=5, subsample_channels=4,
                     dropout=dropout)
    return Supernet(TinyConformerCTC(cfg), SPACE, **options)


def _feats(b: int = 3, t: int = 40, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([t, t - 9, t - 17][:b])
    feats = torch.randn(b, t, 80, generator=g)
    return feats * (torch.arange(t)[None, :, None] < lengths[:, None, None]), lengths


def test_extraction_equals_supernet_run():
    sn = _supernet().eval()
    feats, lengths = _feats()
    wav = 0.1 * torch.randn(2, 5000, generator=torch.Generator().manual_seed(2))
    wl = torch.tensor([5000, 3100])
    with torch.no_grad():
        for choice in (SMALL, LARGE, SubnetChoice(3, 16, 2, 24), SubnetChoice(2, 48, 3, 8)):
            plain = sn.extract(choice).eval()
            a, la = sn.forward_features(feats, lengths, choice)
            enc, lb = plain.encode_features(feats, lengths)
            b = torch.log_softmax(plain.head(enc), dim=-1)
            assert torch.equal(la, lb)
            assert (a - b).abs().max() <= 1e-6
            assert (sn(wav, wl, choice)[0] - plain(wav, wl)[0]).abs().max() <= 1e-6
            assert plain.cfg.num_layers == choice.depth and plain.cfg.ffn_dim == choice.ffn
            assert sum(p.numel() for p in plain.parameters()) == sn.num_parameters(choice)
    assert sn.extract(SMALL).cfg.size == "small" and sn.extract(SubnetChoice(3, 16, 2, 24)).cfg.size == "d3-f16-h2-c24"


def test_largest_choice_is_the_shipped_model():
    from workbench.models.tiny import load_tiny

    shipped = load_tiny()
    sn = Supernet.from_tiny().eval()
    wav = 0.1 * torch.randn(2, 8000, generator=torch.Generator().manual_seed(3))
    wl = torch.tensor([8000, 6000])
    with torch.no_grad():
        ref, _ = shipped.model(wav, wl)
        assert (sn(wav, wl, "large")[0] - ref).abs().max() <= 1e-6
    large = sn.backend("large")
    assert large.fingerprint() == shipped.fingerprint()  # same weights: an adapter for one works on the other
    assert large.name == "workbench-tiny-large" and shipped.name == "workbench-tiny"
    assert shipped.config.size is None  # the shipped model's config is unchanged
    n = [sn.num_parameters(s) for s in ("small", "medium", "large")]
    assert n[0] < n[1] < n[2] == shipped.num_parameters()


def test_sandwich_step_updates_each_sampled_size_on_its_slice():
    torch.manual_seed(0)
    sn = _supernet(dropout=0.0)
    feats, lengths = _feats()
    texts = ["a cat", "hello", "no"]
    choices = [LARGE, SMALL, SubnetChoice(3, 32, 2, 16)]
    before = {k: v.detach().clone() for k, v in sn.model.named_parameters()}
    # each size's own gradient, the largest's posteriors as its teacher
    ref = copy.deepcopy(sn)
    grads = []
    teacher = None
    from workbench.models.tiny import ctc_loss

    for i, c in enumerate(choices):
        ref.zero_grad(set_to_none=True)
        lp, lens = ref.forward_features(feats, lengths, c)
        if i == 0:
            loss, teacher = ctc_loss(lp, lens, texts), lp.detach()
        else:
            loss = alpha_divergence(lp, teacher, lens)
        loss.backward()
        grads.append({k: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
                      for k, p in ref.model.named_parameters()})
    lr = 0.1
    opt = torch.optim.SGD(sn.parameters(), lr=lr)
    out = sandwich_step(sn, feats, lengths, texts, opt, SandwichConfig(distill="alpha", clip_norm=None),
                        generator=torch.Generator(), choices=choices)
    assert not out["skipped"] and [n for n, _ in out["losses"]] == ["large", "small", "d3-f32-h2-c16"]
    after = dict(sn.model.named_parameters())
    for k, w0 in before.items():
        step = (w0 - after[k].detach()) / lr
        torch.testing.assert_close(step, sum(g[k] for g in grads), rtol=1e-4, atol=1e-6)
    # every distilled size moved the shared weights inside its own slice, and only there
    for i, c in ((1, SMALL), (2, choices[2])):
        sliced = ref.sliced_parameters(c)
        w = "blocks.1.ff1.fc1.weight"
        assert grads[i][w][: c.ffn].abs().sum() > 0 and grads[i][w][c.ffn:].abs().sum() == 0
        assert sliced[w].shape[0] == c.ffn
        qkv = grads[i]["blocks.0.attn.qkv.weight"].reshape(3, 3, 8, 24)
        assert qkv[:, : c.heads].abs().sum() > 0 and qkv[:, c.heads:].abs().sum() == 0
        pw1 = grads[i]["blocks.0.conv.pw1.weight"].reshape(2, 24, 24)
        assert pw1[:, : c.conv].abs().sum() > 0 and pw1[:, c.conv:].abs().sum() == 0
        if c.depth < 3:
            assert all(grads[i][k].abs().sum() == 0 for k in grads[i] if k.startswith("blocks.2."))


def test_sample_choices_and_switches():
    sn = _supernet()
    g = torch.Generator().manual_seed(0)
    cs = sample_choices(sn, 3, g)
    assert cs[:2] == [LARGE, SMALL] and len(cs) == 5 and all(SPACE.validate(c) for c in cs)
    with pytest.raises(ValueError, match="distill"):
        SandwichConfig(distill="mse")
    feats, lengths = _feats()
    for distill in ("kl", "none"):
        opt = torch.optim.Adam(sn.parameters(), lr=1e-3)
        out = sandwich_step(sn, feats, lengths, ["a", "b", "c"], opt, SandwichConfig(distill=distill, n_random=1),
                            generator=g)
        assert not out["skipped"] and len(out["losses"]) == 3 and out["grad_norm"] is not None


def test_adaptive_dropout_follows_the_size():
    sn = _supernet(dropout=0.2)
    ratio = sn.num_parameters(SMALL) / sn.num_parameters(LARGE)
    assert sn.dropout_for(LARGE) == pytest.approx(0.2)
    assert sn.dropout_for(SMALL) == pytest.approx(0.2 * ratio) and ratio < 0.5
    assert sn.extract(SMALL).cfg.dropout == pytest.approx(0.2 * ratio)
    assert _supernet(dropout=0.2, adaptive_dropout=False).dropout_for(SMALL) == pytest.approx(0.2)


def test_sizes_are_separate_base_models_and_adapters_bind_to_one(tmp_path):
    from workbench.adapters import ResidualConfig, inject, load_submodel

    sn = _supernet()
    small, large = sn.backend("small"), sn.backend("large")
    assert small.fingerprint() != large.fingerprint()
    assert (small.name, large.name) == ("workbench-tiny-small", "workbench-tiny-large")
    path = inject(small, ResidualConfig(bottleneck=4)).save(tmp_path / "a.safetensors", speaker_ids=["spk"])
    with pytest.raises(AdapterError) as err:
        load_submodel(large, path)
    assert "'small' size" in str(err.value) and "'large' size" in str(err.value)
    load_submodel(sn.backend("small"), path)  # the same size loads


def test_a_bad_size_lists_the_valid_ones():
    with pytest.raises(ModelSizeError) as err:
        SubnetChoice.parse("huge")
    msg = str(err.value)
    assert isinstance(err.value, WorkbenchError)
    assert "small, medium, large" in msg and "4/6/8" in msg and "288/432/576" in msg and "72/108/144" in msg
    with pytest.raises(ModelSizeError, match="depth=5.*depth one of 4/6/8"):
        DEFAULT_SPACE.parse("depth=5,ffn=288,heads=2,conv=72")
    with pytest.raises(ModelSizeError, match="conv=9"):
        _supernet().forward_features(*_feats(), SubnetChoice(2, 16, 3, 9))  # conv 9 is not offered
    assert DEFAULT_SPACE.parse(" Medium ") == SubnetChoice(6, 432, 3, 108)
    with pytest.raises(ModelSizeError, match="largest size"):
        Supernet(TinyConformerCTC(TinyConfig(d_model=24, num_layers=2, num_heads=3)), SPACE)


# ------------------------------------------------------------------ distillation losses
def _posteriors(seed: int, shape=(2, 5, 6), scale: float = 1.0) -> torch.Tensor:
    return torch.log_softmax(scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_divergences_are_zero_for_equal_posteriors_with_zero_gradient():
    p = _posteriors(0)
    lengths = torch.tensor([5, 3])
    for loss_fn in (alpha_divergence, kl_divergence):
        logits = p.clone().requires_grad_(True)  # log-probs are logits of the same posteriors
        loss = loss_fn(torch.log_softmax(logits, -1), p, lengths)
        assert abs(float(loss.detach())) < 1e-6
        loss.backward()
        assert logits.grad.abs().max() < 1e-6


def test_alpha_divergence_limits_are_kl():
    p, q = _posteriors(1, scale=0.5), _posteriors(2, scale=0.5)
    kl_pq = (p.exp() * (p - q)).sum(-1)
    kl_qp = (q.exp() * (q - p)).sum(-1)
    torch.testing.assert_close(f_divergence(q, p, 1.0)[0], kl_pq)  # alpha = 1: KL(p || q)
    torch.testing.assert_close(f_divergence(q, p, 0.0, iw_clip=1e6)[0], kl_qp)  # alpha = 0: KL(q || p)
    torch.testing.assert_close(f_divergence(q, p, 0.99, iw_clip=1e6)[0], kl_pq, rtol=0.05, atol=1e-4)
    lengths = torch.tensor([5, 5])
    torch.testing.assert_close(kl_divergence(q, p, lengths), kl_pq.mean())
    chi2 = 0.5 * (q.exp() ** 2 / p.exp() - q.exp()).sum(-1)  # alpha = -1 (unclipped)
    torch.testing.assert_close(f_divergence(q, p, -1.0, iw_clip=1e6)[0], chi2)
    both = alpha_divergence(q, p, lengths, iw_clip=1e6)
    torch.testing.assert_close(both, torch.maximum(kl_pq, chi2).mean())


def _alphanet_adaptive(output, target, alpha_min=-1.0, alpha_max=1.0, iw_clip=5.0):
    """facebookresearch/AlphaNet loss_ops.py (f_divergence + AdaptiveLossSoft, mean), on logits (N, V)."""
    def f_div(q_logits, p_logits, alpha):
        q_prob = torch.softmax(q_logits, dim=1).detach()
        p_prob = torch.softmax(p_logits, dim=1).detach()
        q_log_prob = torch.log_softmax(q_logits, dim=1)
        ratio = p_prob / q_prob
        if abs(alpha - 1.0) < 1e-3:
            f, f_base, rho_f = ratio * ratio.log(), 0, ratio
        else:
            iw = torch.pow(ratio, alpha).clamp(0, iw_clip)
            f, f_base = iw / alpha / (alpha - 1.0), 1.0 / alpha / (alpha - 1.0)
            rho_f = iw / alpha + f_base
        return torch.sum(q_prob * (f - f_base), dim=1), -torch.sum(q_prob * rho_f * q_log_prob, dim=1)

    left, gl = f_div(output, target, alpha_min)
    right, gr = f_div(output, target, alpha_max)
    ind = torch.gt(left, right).float()
    return (ind * gl + (1.0 - ind) * gr).mean()


def test_alpha_divergence_gradient_is_alphanets_and_padding_is_ignored():
    teacher = _posteriors(3, scale=2.0)
    logits = (2.0 * torch.randn(2, 5, 6, generator=torch.Generator().manual_seed(4))).requires_grad_(True)
    lengths = torch.tensor([5, 5])
    alpha_divergence(torch.log_softmax(logits, -1), teacher, lengths).backward()
    ours = logits.grad.clone()
    logits.grad = None
    _alphanet_adaptive(logits.reshape(-1, 6), teacher.reshape(-1, 6)).backward()
    torch.testing.assert_close(ours, logits.grad, rtol=1e-5, atol=1e-7)
    # padded frames (utterance 1 has 3 true frames) change nothing
    short = torch.tensor([5, 3])
    q = torch.log_softmax(logits.detach(), -1)
    noisy = q.clone()
    noisy[1, 3:] = _posteriors(5)[1, 3:]
    for fn in (alpha_divergence, kl_divergence):
        assert torch.equal(fn(q, teacher, short), fn(noisy, teacher, short))
    frames = torch.cat([q[0], q[1, :3]])[None]
    torch.testing.assert_close(alpha_divergence(q, teacher, short),
                               alpha_divergence(frames, torch.cat([teacher[0], teacher[1, :3]])[None],
                                                torch.tensor([8])))


def test_a_shipped_size_loads_by_name(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from workbench.models import load_base_model
    from workbench.models.supernet import model as supernet
    from workbench.models.choice import choose_base_model
    from workbench.models.tiny import save_tiny

    monkeypatch.setattr(supernet, "_sizes_root", lambda: tmp_path)
    with pytest.raises(ModelSizeError, match="not installed.*train_supernet.py"):
        load_base_model("tiny", size="small")
    sn = _supernet()
    save_tiny(sn.extract(SMALL).eval(), tmp_path / "tiny-small", fp16=True)
    assert supernet.installed_sizes() == ["small"]
    for name, kw in (("tiny", {"size": "small"}), ("tiny-small", {}), ("workbench-tiny-small", {})):
        backend = load_base_model(name, **kw)
        assert backend.name == "workbench-tiny-small" and backend.config.num_layers == SMALL.depth
    assert set(load_file(str(tmp_path / "tiny-small" / "model.safetensors"))) >= {"head.weight"}
    with pytest.raises(ModelSizeError, match="valid sizes are small, medium, large"):
        load_base_model("tiny", size="tiny")
    assert choose_base_model(None, adapter_base="workbench-tiny-small").name == "workbench-tiny-small"


def test_sizes_table_pick_and_cli(tmp_path, monkeypatch, capsys):
    from workbench.cli import main
    from workbench.models.supernet import model as supernet, sizes
    from workbench.models.tiny import save_tiny

    monkeypatch.setattr(supernet, "_sizes_root", lambda: tmp_path)
    assert sizes.pick_size(0.5)[0] == "tiny"
    sn = _supernet()
    for name in ("small", "large"):
        save_tiny(sn.extract(name).eval(), tmp_path / f"tiny-{name}", fp16=True)
    monkeypatch.setattr(sizes, "measure_rtf", lambda backend, seconds=2.0: backend.num_parameters() * 1e-6)
    rows = sizes.size_table()
    assert [r.model for r in rows] == ["tiny-small", "tiny-large", "tiny"] and rows[0].params < rows[1].params
    n_small, n_large = rows[0].params * 1e-6, rows[1].params * 1e-6
    model, reason = sizes.pick_size((n_small + n_large) / 2)
    assert model == "tiny-small" and "workbench-tiny-small" in reason and "largest size" in reason
    assert sizes.pick_size(n_large + 1)[0] == "tiny-large"
    model, reason = sizes.pick_size(n_small / 2)
    assert model == "tiny-small" and "no size meets" in reason
    assert main(["models", "--seconds", "0.1", "--rtf-budget", str(n_large + 1)]) == 0
    out = capsys.readouterr().out
    assert "tiny-small" in out and "workbench-tiny-large" in out and "the largest size" in out
