"""Log-mel frontend: shapes, lengths, batch == items, padding independence."""

import numpy as np
import pytest
import torch

from workbench.features import (
    HOP_LENGTH,
    N_MELS,
    LogMel,
    frame_lengths,
    normalize_per_utterance,
    pad_waveforms,
)


def _waves(seed=0, lengths=(16000, 8001, 3999, 160)):
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in lengths]


def test_pad_waveforms_shapes_and_lengths():
    wavs = _waves()
    wav, lens = pad_waveforms(wavs)
    assert wav.shape == (4, 16000) and wav.dtype == torch.float32
    assert lens.tolist() == [16000, 8001, 3999, 160]
    assert torch.all(wav[1, 8001:] == 0)
    np.testing.assert_array_equal(wav[2, :3999].numpy(), wavs[2])


def test_logmel_shapes_and_frame_lengths():
    feats, flens = LogMel()(*pad_waveforms(_waves()))
    assert feats.shape == (4, 1 + 16000 // HOP_LENGTH, N_MELS)
    assert flens.tolist() == [1 + n // HOP_LENGTH for n in (16000, 8001, 3999, 160)]
    assert torch.equal(frame_lengths(torch.tensor([0, 159, 160])), torch.tensor([1, 1, 2]))


def test_batch_equals_items_one_by_one():
    wavs = _waves(1)
    m = LogMel()
    feats, flens = m(*pad_waveforms(wavs))
    for i, w in enumerate(wavs):
        f1, l1 = m(*pad_waveforms([w]))
        assert int(l1) == int(flens[i])
        torch.testing.assert_close(feats[i, : flens[i]], f1[0], atol=1e-5, rtol=0)


def test_padding_is_zero_and_does_not_matter():
    m = LogMel()
    w = _waves(2, (5000,))[0]
    wav, lens = pad_waveforms([w])
    garbage = torch.cat([wav, torch.randn(1, 3000)], dim=1)  # junk past the true end
    f_a, l_a = m(wav, lens)
    f_b, l_b = m(garbage, lens)
    assert torch.equal(l_a, l_b)
    torch.testing.assert_close(f_a, f_b[:, : f_a.shape[1]], atol=1e-5, rtol=0)
    assert torch.all(f_b[:, l_b[0] :] == 0)


def test_per_utterance_normalisation_uses_true_frames_only():
    x = torch.randn(2, 50, 3) * 4 + 7
    lens = torch.tensor([50, 20])
    y = normalize_per_utterance(x, lens)
    torch.testing.assert_close(y[1, :20].mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(y[1, :20].std(0, unbiased=False), torch.ones(3), atol=1e-3, rtol=0)
    assert torch.all(y[1, 20:] == 0)


def test_silence_is_finite():
    feats, _ = LogMel()(*pad_waveforms([np.zeros(4000, np.float32)]))
    assert torch.isfinite(feats).all()


@pytest.mark.parametrize("normalize", [True, False])
def test_no_normalisation_option(normalize):
    feats, flens = LogMel(normalize=normalize)(*pad_waveforms(_waves(3, (3200, 1600))))
    assert torch.all(feats[1, flens[1] :] == 0)
