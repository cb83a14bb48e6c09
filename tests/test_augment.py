"""Property tests for adaptive SpecAugment on padded batches."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from workbench.augment import (
    POLICIES,
    SpecAugment,
    SpecAugmentPolicy,
    add_noise,
    spec_augment,
    speed_perturb,
    time_masks,
)

ADAPTIVE = POLICIES["librispeech_adaptive"]


def _batch(lengths: list[int], n_mels: int = 80, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t = max(max(lengths), 1)
    x = torch.randn(len(lengths), t, n_mels, generator=g) + 5.0  # away from 0 so zero-fill is visible
    lens = torch.tensor(lengths)
    pad = torch.arange(t)[None, :] >= lens[:, None]
    x[pad] = 0.0
    return x, lens


def _random_lengths(rng: np.random.Generator, n: int) -> list[int]:
    return [int(v) for v in rng.integers(0, 1600, size=n)]


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_nothing_masked_or_changed_beyond_true_length(name: str) -> None:
    rng = np.random.default_rng(1)
    for trial in range(5):
        lengths = _random_lengths(rng, 12) + [0, 1, 3]
        x, lens = _batch(lengths, seed=trial)
        y, masks = spec_augment(x, lens, POLICIES[name], generator=torch.Generator().manual_seed(trial),
                                return_masks=True)
        for i, n in enumerate(lengths):
            assert not masks.time[i, n:].any(), f"time mask in padding of item {i} (len {n})"
            assert torch.equal(y[i, n:], x[i, n:]), f"padding changed in item {i} (len {n})"


def test_counts_and_widths_follow_adaptive_formulas() -> None:
    # p_M = p_S = 0.04, M_max = 20: 100 frames -> 4 masks of <= 4 frames, 3000 -> 20 of <= 120
    assert ADAPTIVE.expected_time_masks(100) == (4, 4)
    assert ADAPTIVE.expected_time_masks(500) == (20, 20)
    assert ADAPTIVE.expected_time_masks(3000) == (20, 120)
    assert ADAPTIVE.expected_time_masks(24) == (0, 0)  # shorter than the minimum: no masks
    conformer = POLICIES["conformer"]
    assert conformer.expected_time_masks(1000) == (10, 50)
    ss = POLICIES["SS"]
    assert ss.expected_time_masks(200) == (2, 40)  # min(T=70, p=0.2 * 200)
    assert ss.expected_time_masks(1000) == (2, 70)


def test_width_distribution_is_uniform_up_to_the_adaptive_cap() -> None:
    """With one mask of max width W the masked run length is ~ U{0..W}: mean W/2."""
    policy = SpecAugmentPolicy(freq_masks=0, time_masks=1, adaptive_size=0.1)
    n = 4000
    x, lens = _batch([400] * n, n_mels=2)
    _, masks = spec_augment(x, lens, policy, seeds=torch.arange(n), return_masks=True)
    widths = masks.time.sum(1).double()
    assert widths.max() <= 40
    assert abs(widths.mean().item() - 20.0) < 1.0
    # every value 0..40 occurs (uniform over 41 values, 4000 draws)
    assert len(torch.unique(widths)) == 41


def test_masked_fraction_tracks_own_length_not_batch_max() -> None:
    """Short and long utterances in one batch are each masked ~ in proportion to themselves."""
    n_pairs = 300
    lengths = [150, 1500] * n_pairs
    x, lens = _batch(lengths, n_mels=2)
    _, masks = spec_augment(x, lens, ADAPTIVE, seeds=torch.arange(len(lengths)), return_masks=True)
    frac = masks.time.sum(1).double() / lens.double()
    short, long = frac[0::2].mean().item(), frac[1::2].mean().item()
    # expected before overlap: count * mean width / tau = p_M * tau * (p_S * tau / 2) / tau
    expect_short = 6 * 3 / 150  # floor(.04*150)=6 masks, mean width 6/2
    assert abs(short - expect_short) < 0.03, short
    assert long < 0.5 and long > 0.1  # 20 masks of mean 30 frames, minus overlaps
    assert short < long  # the short item is not over-masked because of its long neighbour


def test_padded_length_approach_over_masks_short_items() -> None:
    """What torchaudio/ESPnet/lhotse do (sizes from the padded length) vs ours, on one batch."""
    lengths = [100, 1500] * 200
    x, lens = _batch(lengths, n_mels=2)
    seeds = torch.arange(len(lengths))
    ours = spec_augment(x, lens, ADAPTIVE, seeds=seeds, return_masks=True)[1].time
    padded = time_masks(torch.full_like(lens, x.shape[1]), x.shape[1], ADAPTIVE, seeds)  # sizes from T_max
    short_ours = ours[0::2, :100].double().mean().item()
    short_padded = padded[0::2, :100].double().mean().item()
    assert short_ours < 0.1
    assert short_padded > 2 * short_ours  # padded-length masks hide far more of the short item ...
    assert padded[0::2, 100:].any()  # ... and spill into its padding


def test_same_seed_same_output_and_different_seed_differs() -> None:
    x, lens = _batch([300, 500, 800])
    a = spec_augment(x, lens, POLICIES["LD"], generator=torch.Generator().manual_seed(7))
    b = spec_augment(x, lens, POLICIES["LD"], generator=torch.Generator().manual_seed(7))
    c = spec_augment(x, lens, POLICIES["LD"], generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("name", ["LD", "SS", "librispeech_adaptive", "conformer"])
@pytest.mark.parametrize("mask_value", ["zero", "mean", "noise"])
def test_batch_equals_items_one_by_one(name: str, mask_value: str) -> None:
    lengths = [640, 90, 1200, 0, 333]
    x, lens = _batch(lengths)
    policy = POLICIES[name].replace(mask_value=mask_value)
    seeds = torch.tensor([11, 22, 33, 44, 55])
    y = spec_augment(x, lens, policy, seeds=seeds)
    for i, n in enumerate(lengths):
        yi = spec_augment(x[i : i + 1, :n], lens[i : i + 1], policy, seeds=seeds[i : i + 1])
        torch.testing.assert_close(y[i, :n], yi[0], rtol=1e-5, atol=1e-5)


def test_short_utterance_gets_no_time_masks_and_empty_rows_do_not_crash() -> None:
    x, lens = _batch([10, 0, 0])
    y, masks = spec_augment(x, lens, ADAPTIVE, seeds=torch.tensor([1, 2, 3]), return_masks=True)
    assert not masks.time.any()
    assert not masks.freq[1:].any()  # empty rows get nothing
    empty = torch.zeros(0, 0, 80)
    assert spec_augment(empty, torch.zeros(0, dtype=torch.long), ADAPTIVE).shape == (0, 0, 80)


def test_time_warp_stays_inside_true_frames_and_preserves_endpoints() -> None:
    policy = SpecAugmentPolicy(time_warp=40, freq_masks=0)
    x, lens = _batch([400, 200, 60])
    y, masks = spec_augment(x, lens, policy, seeds=torch.tensor([3, 4, 5]), return_masks=True)
    for i, n in enumerate([400, 200, 60]):
        assert torch.equal(y[i, n:], x[i, n:])
        torch.testing.assert_close(y[i, 0], x[i, 0])  # first frame maps to itself
        c, d = masks.warp[i].tolist()
        assert 0 < c + d < n
        torch.testing.assert_close(y[i, c + d], x[i, c])  # the centre lands where it was moved
    assert (masks.warp[:, 1] != 0).any()


def test_mask_values() -> None:
    x, lens = _batch([200])
    for mode in ("zero", "mean", "noise"):
        policy = SpecAugmentPolicy(freq_masks=0, time_masks=1, time_width=50, mask_value=mode)
        y, m = spec_augment(x, lens, policy, seeds=torch.tensor([9]), return_masks=True)
        masked = y[0][m.time[0]]
        assert masked.numel() > 0
        if mode == "zero":
            assert (masked == 0).all()
        elif mode == "mean":
            torch.testing.assert_close(masked[0], x[0, :200].mean(0))
        else:
            assert masked.std() > 0.5 and abs(masked.mean().item() - 5.0) < 0.5


def test_input_is_not_modified_and_dtype_kept() -> None:
    x, lens = _batch([300])
    x = x.half()
    before = x.clone()
    y = spec_augment(x, lens, POLICIES["LD"], seeds=torch.tensor([1]))
    assert torch.equal(x, before) and y.dtype == torch.float16


def test_policy_validation_and_serialization() -> None:
    for name, policy in POLICIES.items():
        assert SpecAugmentPolicy.from_json(policy.to_json()) == policy, name
        json.loads(policy.to_json())
    with pytest.raises(ValueError, match="adaptive_size"):
        SpecAugmentPolicy(time_masks=3)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        SpecAugmentPolicy(adaptive_size=1.5, time_masks=2)
    with pytest.raises(ValueError, match="mask_value"):
        SpecAugmentPolicy(mask_value="median")
    with pytest.raises(ValueError, match="unknown"):
        SpecAugmentPolicy.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="lengths"):
        spec_augment(torch.zeros(2, 10, 4), torch.tensor([11, 3]), ADAPTIVE)


def test_probability_p_skips_some_utterances() -> None:
    policy = ADAPTIVE.replace(p=0.5)
    x, lens = _batch([500] * 400, n_mels=4)
    y = spec_augment(x, lens, policy, seeds=torch.arange(400))
    changed = (y != x).flatten(1).any(1).double().mean().item()
    assert 0.4 < changed < 0.6


def test_module_is_identity_in_eval_mode() -> None:
    aug = SpecAugment("LD")
    x, lens = _batch([300])
    assert torch.equal(aug.eval()(x, lens), x)
    before = x.clone()
    assert not torch.equal(aug.train()(x, lens, seeds=torch.tensor([1])), before)
    with pytest.raises(ValueError, match="unknown SpecAugment policy"):
        SpecAugment("XL")


def test_waveform_perturbations() -> None:
    rng = np.random.default_rng(0)
    wav = np.sin(2 * math.pi * 220 * np.arange(16000) / 16000).astype(np.float32)
    assert abs(len(speed_perturb(wav, 1.1)) - 16000 / 1.1) < 2
    noisy = add_noise(wav, 10.0, rng=rng)
    snr = 10 * math.log10(np.mean(wav**2) / np.mean((noisy - wav) ** 2))
    assert abs(snr - 10.0) < 0.2
    with pytest.raises(ValueError):
        speed_perturb(wav, 3.0)


@pytest.mark.parametrize("name", ["LD", "librispeech_adaptive"])
@pytest.mark.parametrize("mask_value", ["zero", "mean"])
def test_inplace_matches_out_of_place(name: str, mask_value: str) -> None:
    x, lens = _batch([700, 40, 1100, 0])
    policy = POLICIES[name].replace(mask_value=mask_value)
    seeds = torch.tensor([5, 6, 7, 8])
    expected = spec_augment(x, lens, policy, seeds=seeds)
    buf = x.clone()
    got = spec_augment(buf, lens, policy, seeds=seeds, inplace=True)
    assert got.data_ptr() == buf.data_ptr()
    torch.testing.assert_close(got, expected)


# ---------------------------------------------------------------------------- floor(p * tau), exactly


def test_adaptive_size_029_of_100_frames_is_29() -> None:
    """Floating point says 0.29 * 100 = 28.999999999999996; the policy means 29 frames."""
    from workbench.augment import floor_ratio

    assert floor_ratio(0.29, np.array([100]))[0] == 29
    policy = SpecAugmentPolicy(time_masks=1, adaptive_size=0.29, adaptive_multiplicity=0.29, freq_masks=0)
    assert policy.expected_time_masks(100) == (1, 29)
    assert SpecAugmentPolicy(time_masks=40, adaptive_multiplicity=0.29, adaptive_size=0.05).expected_time_masks(100)[0] == 29
    assert SpecAugmentPolicy(time_masks=1, time_width=100, time_ratio=0.29).expected_time_masks(100) == (1, 29)


def test_floor_ratio_matches_exact_fractions_in_a_sweep() -> None:
    from fractions import Fraction

    from workbench.augment import floor_ratio

    tau = np.arange(0, 3001, dtype=np.int64)
    rng = np.random.default_rng(0)
    ratios = [k / 100 for k in range(101)] + [k / 1000 for k in range(0, 1001, 7)]
    ratios += [round(float(r), 6) for r in rng.random(200)] + [1 / 3, 2 / 3, 1 / 7]
    for p in ratios:
        exact = Fraction(repr(p)) if len(repr(p)) <= 11 else Fraction(p).limit_denominator(1000)
        want = np.array([int(exact * int(t)) for t in tau])  # int() of a non-negative Fraction is its floor
        got = floor_ratio(p, tau)
        bad = np.flatnonzero(got != want)
        assert not bad.size, f"p={p!r}: tau={tau[bad[:3]]} gave {got[bad[:3]]}, want {want[bad[:3]]}"
    big = np.array([999_999, 10**6 - 3])  # long recordings: still exact at 9 decimal places
    assert (floor_ratio(0.123456789, big) == [int(Fraction("0.123456789") * int(t)) for t in big]).all()
