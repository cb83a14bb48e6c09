"""Against the peers, side by side in one process: SpecAugment (lhotse, SpeechBrain) and mixed-speaker LoRA (PEFT).

1. **SpecAugment** on a padded batch ``(32, 1500, 80)`` with true lengths of 100-1500
   frames (uniform), one matched policy: 2 frequency masks of 0-27 mel bins and 10 time
   masks of 0-50 frames, no time warp, every utterance augmented. Ours
   (:func:`workbench.augment.spec_augment`) out of place against lhotse's
   ``SpecAugment`` (which clones the batch), and in place against SpeechBrain's
   ``SpectrogramDrop`` (time, then frequency: it fills in place). The four variants run
   in alternating rounds; before every call the batch is rewritten (untimed), as the
   feature extractor does before a training step. Besides the speed: how many frames
   per call a time mask covers inside the **padding** (wasted masking: the peers draw
   positions over the padded length), measured on a batch with random values in the
   padding (a frame counts as time-masked when every mel bin changed).
2. **Mixed-speaker LoRA inference**: our :class:`~workbench.adapters.SubmodelBank` against
   PEFT's mixed-batch inference (``adapter_names=[...]`` in ``PeftModel.forward``) with
   the same LoRA weights loaded into both (rank 8, alpha 16: both scale by alpha/r, PEFT
   without rsLoRA), on the built-in model (CTC log-probabilities of 64 utterances) and
   on Whisper tiny.en (the teacher-forced forward: encoder, decoder and output layer,
   the workbench's "auto" window, no key/value cache on any side; its default LoRA).
   Batches of 64 with 1, 8 and 64 distinct speakers out of 64 loaded, and a single
   adapter (a one-speaker bank; PEFT with one adapter and no ``adapter_names``).
   Each side runs on its own copy of the base model, the same scoring code (a module
   wrapping the backend, so PEFT is driven through its public ``forward``); reported:
   utterances per second, the ratio, and the outputs' largest absolute difference.
   The base model with no adapter runs in the same alternating rounds, which gives each
   side's **overhead over no adapter**. On Whisper, where the float32 roundings part:
   each encoder and decoder layer's largest difference between ours and PEFT, and each
   side's distance from a float64 copy of PEFT; for the single adapter also PEFT's own
   merge (``merge_adapter``) against PEFT unmerged.
3. **The vector family** ((IA)^3 and rank-1 FLoRA per-speaker scalings, on the same layers
   as the LoRA) on the same batch, alternating with the base model: its mixed-batch cost
   over no adapter at 1 and at 64 distinct speakers, and its parameters per speaker
   against LoRA's. No peer serves per-speaker vectors in one batch, so no ratio to PEFT.

Whisper transcription against CTranslate2 and pocketsphinx is ``bench_real_speech``
(its figures feed the same table); personalization against a PEFT + ``Seq2SeqTrainer``
script is ``bench_peers_training``.

Run: ``python -m bench.bench_peers [--quick] [--device cuda]`` (SpecAugment and the built-in model, part
of ``python -m bench``, about 2 minutes) and ``python -m bench.bench_peers_whisper`` (Whisper tiny.en,
opt-in: ``python -m bench --only peers_whisper``, about 4 minutes).
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from bench._common import bench_main, compare_samples, machine, spread
from bench.bench_submodels import _waves  # noise recordings of about `seconds` each
from bench.peers import missing, speechbrain_freq_domain

if TYPE_CHECKING:
    from workbench.adapters import SubmodelBank
    from workbench.models import ASRBackend, Batch

__all__ = ["DISTINCT", "MATCHED", "VECTOR_MODES", "bench_mixed_lora", "bench_specaugment", "main_whisper", "run",
           "run_whisper"]

DISTINCT = [1, 8, 64]  # distinct speakers in a batch of 64
VECTOR_MODES = ("ia3", "flora")  # the vector family's modes measured
#: The matched SpecAugment policy (each library's own parameters for it are in _augmenters)
MATCHED = {"freq_masks": 2, "freq_width": 27, "time_masks": 10, "time_width": 50}


# ---------------------------------------------------------------------------------- SpecAugment
def _augmenters(x_work: torch.Tensor, lengths: torch.Tensor, g: torch.Generator) -> dict[str, Callable]:
    """name -> call on ``x_work`` (B, T, F); the peers that are not installed are left out."""
    from workbench.augment import SpecAugmentPolicy, spec_augment

    m = MATCHED
    policy = SpecAugmentPolicy(freq_masks=m["freq_masks"], freq_width=m["freq_width"], time_masks=m["time_masks"],
                               time_width=m["time_width"], time_ratio=1.0, name="matched")
    fns: dict[str, Callable] = {
        "ours_out_of_place": lambda: spec_augment(x_work, lengths, policy, generator=g),
        "ours_in_place": lambda: spec_augment(x_work, lengths, policy, generator=g, inplace=True),
    }
    if missing("lhotse") is None:
        from lhotse.dataset.signal_transforms import SpecAugment

        # widths are drawn in [0, size): size = width + 1; the time-mask cap (fraction of the
        # padded length) is set so that it never binds (10 masks of at most 50 frames)
        lhotse = SpecAugment(time_warp_factor=None, num_feature_masks=m["freq_masks"],
                             features_mask_size=m["freq_width"] + 1, num_frame_masks=m["time_masks"],
                             frames_mask_size=m["time_width"] + 1, max_frames_mask_fraction=1.0, p=1.0)
        fns["lhotse"] = lambda: lhotse(x_work)
    if missing("speechbrain") is None:
        drop = speechbrain_freq_domain().SpectrogramDrop
        sb_time = drop(drop_length_low=0, drop_length_high=m["time_width"] + 1, drop_count_low=m["time_masks"],
                       drop_count_high=m["time_masks"], replace="zeros", dim=1)
        sb_freq = drop(drop_length_low=0, drop_length_high=m["freq_width"] + 1, drop_count_low=m["freq_masks"],
                       drop_count_high=m["freq_masks"], replace="zeros", dim=2)
        fns["speechbrain"] = lambda: sb_freq(sb_time(x_work))
    return fns


def _masked_frames(fn: Callable, work: torch.Tensor, x: torch.Tensor, lengths: torch.Tensor,
                   calls: int) -> dict[str, float]:
    """Mean time-masked frames per call inside the padding and inside the utterances."""
    pad = torch.arange(x.shape[1])[None, :] >= lengths.cpu()[:, None]  # (B, T)
    in_pad, in_utt = [], []
    for _ in range(calls):
        work.copy_(x)
        out = fn()
        frame_masked = (out.cpu() != x.cpu()).all(dim=-1)  # every bin changed: a time mask
        in_pad.append(int((frame_masked & pad).sum()))
        in_utt.append(int((frame_masked & ~pad).sum()))
    return {"in_padding": statistics.mean(in_pad), "in_utterances": statistics.mean(in_utt)}


def bench_specaugment(device: str, quick: bool) -> dict:
    g = torch.Generator().manual_seed(0)
    batch, frames, n_mels = (8, 300, 80) if quick else (32, 1500, 80)
    lengths = torch.randint(frames // 15, frames + 1, (batch,), generator=g)
    lengths[0] = frames  # the longest utterance sets the padded length
    x = torch.randn(batch, frames, n_mels, generator=g).to(device)  # random values in the padding too
    lengths = lengths.to(device)
    work = x.clone()
    random.seed(0)  # lhotse draws with Python's and torch's global generators
    torch.manual_seed(0)
    fns = _augmenters(work, lengths, g)
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    samples = compare_samples(fns, repeat=5 if quick else 30, sync=sync, setup=lambda: work.copy_(x))
    result: dict = {"batch": batch, "frames": frames, "n_mels": n_mels,
                    "lengths": f"{frames // 15}-{frames} frames (uniform)", "policy": MATCHED,
                    "padding_fraction": float(1 - lengths.sum() / (batch * frames)),
                    "ms": {k: spread([1e3 * t for t in v]) for k, v in samples.items()},
                    "masked_frames": {k: _masked_frames(f, work, x, lengths, 3 if quick else 20)
                                      for k, f in fns.items()},
                    "missing": {p: missing(p) for p in ("lhotse", "speechbrain") if missing(p)}}
    for peer, ours in (("lhotse", "ours_out_of_place"), ("speechbrain", "ours_in_place")):
        if peer in samples:
            rounds = [a / b for a, b in zip(samples[peer], samples[ours], strict=True)]
            result[f"speedup_vs_{peer}"] = result["ms"][peer]["median"] / result["ms"][ours]["median"]
            result[f"speedup_vs_{peer}_rounds"] = spread(rounds)
    for k, s in result["ms"].items():
        mf = result["masked_frames"][k]
        print(f"SpecAugment {k:18s} {s['median']:7.2f} ms (q1-q3 {s['q1']:.2f}-{s['q3']:.2f})  time-masked frames "
              f"per call: {mf['in_padding']:7.0f} in padding, {mf['in_utterances']:7.0f} in utterances", flush=True)
    for peer in ("lhotse", "speechbrain"):
        if f"speedup_vs_{peer}" in result:
            print(f"   ours vs {peer}: {result[f'speedup_vs_{peer}']:.2f}x faster", flush=True)
        else:
            print(f"   {peer}: {missing(peer)}", flush=True)
    return result


# ---------------------------------------------------------------------------------- mixed-speaker LoRA
class _Scoring(nn.Module):
    """A backend's scoring forward as a module, so that PEFT can wrap it: ``PeftModel.forward(batch,
    adapter_names=...)`` routes each example to its adapter, then calls :meth:`forward`."""

    def __init__(self, backend: ASRBackend, fn: Callable[[ASRBackend, Batch], torch.Tensor]) -> None:
        super().__init__()
        self.net = backend.model  # the only submodule: PEFT finds the linears under "net."
        self._backend, self._fn = backend, fn

    def forward(self, batch: Batch) -> torch.Tensor:
        return self._fn(self._backend, batch)


def _builtin_scores(backend: ASRBackend, batch: Batch) -> torch.Tensor:
    return backend.log_probs(batch)[0]  # (B, T', V) CTC log-probabilities


def _whisper_scorer(texts: list[str]) -> Callable[[ASRBackend, Batch], torch.Tensor]:
    def scores(backend: ASRBackend, batch: Batch) -> torch.Tensor:
        enc, _ = backend.encode(batch)
        dec_in, _ = backend.decoder_io(texts)
        decoder = backend.model.model.decoder
        hidden = decoder(input_ids=dec_in.to(enc.device), encoder_hidden_states=enc,
                         use_cache=False).last_hidden_state  # no decoding steps: no cache, on every side
        return backend.model.proj_out(hidden)  # (B, P + N, vocab) teacher-forced logits
    return scores


def _bank(backend: ASRBackend, config, n: int, seed: int) -> SubmodelBank:
    """A bank of ``n`` speakers with distinct, non-zero LoRA factors (B starts at zero otherwise)."""
    from workbench.adapters import SubmodelBank

    torch.manual_seed(seed)
    bank = SubmodelBank(backend, config, [f"spk{i}" for i in range(n)])
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for a in bank.adapted.adapters.values():
            a.lora_b.copy_(0.02 * torch.randn(a.lora_b.shape, generator=g))
    return bank


def _peft_copy(bank: SubmodelBank, backend_b: ASRBackend, fn) -> tuple[nn.Module, int]:
    """PEFT LoRA on ``backend_b`` (a second copy of the base model) holding the bank's weights:
    adapter ``spk{i}`` = bank row ``i``. Returns the PeftModel (eval mode) and the layers adapted."""
    from peft import LoraConfig, get_peft_model

    adapted = bank.adapted
    names_a = {id(m): n for n, m in adapted.backend.model.named_modules()}
    paths = {f"net.{names_a[id(lin)]}": key for key, lin in adapted._linears.items()}
    cfg = adapted.config
    peft_cfg = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, target_modules=sorted(paths), lora_dropout=0.0,
                          bias="none", use_rslora=False)
    wrapper = _Scoring(backend_b, fn)
    model = get_peft_model(wrapper, peft_cfg, adapter_name="spk0")
    for i in range(1, bank.num_speakers):
        model.add_adapter(f"spk{i}", peft_cfg)
    done = 0
    with torch.no_grad():
        for name, module in model.named_modules():
            path = name.removeprefix("base_model.model.")
            if path in paths and hasattr(module, "lora_A"):
                ours = adapted.adapters[paths[path]]
                for i in range(bank.num_speakers):
                    module.lora_A[f"spk{i}"].weight.copy_(ours.lora_a[i])
                    module.lora_B[f"spk{i}"].weight.copy_(ours.lora_b[i])
                done += 1
    if done != len(paths):
        raise RuntimeError(f"PEFT adapted {done} layers, the bank {len(paths)}")
    return model.eval(), done


def _taps(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Whisper's encoder layers, its final layer norm and its decoder layers, in order."""
    enc, dec = model.model.encoder, model.model.decoder
    return [*((f"encoder.{i}", m) for i, m in enumerate(enc.layers)), ("encoder.layer_norm", enc.layer_norm),
            *((f"decoder.{i}", m) for i, m in enumerate(dec.layers))]


def _traced(model: nn.Module, call: Callable[[], torch.Tensor]) -> dict[str, torch.Tensor]:
    """``call()``'s output ("logits") and each of :func:`_taps`'s outputs on the way, in float64."""
    seen: dict[str, torch.Tensor] = {}

    def keep(name: str):
        return lambda m, a, o: seen.__setitem__(name, (o[0] if isinstance(o, tuple) else o).detach().double())

    hooks = [m.register_forward_hook(keep(name)) for name, m in _taps(model)]
    try:
        with torch.no_grad():
            seen["logits"] = call().detach().double()
    finally:
        for h in hooks:
            h.remove()
    return seen


def _per_layer(ours: dict, peft: dict, exact: dict) -> dict[str, dict[str, float]]:
    """Per tap: the largest |ours - PEFT| and each side's largest distance from the float64 run."""
    big = lambda t: float(t.abs().max())  # noqa: E731
    return {name: {"ours_vs_peft": big(ours[name] - peft[name]), "ours_vs_float64": big(ours[name] - exact[name]),
                   "peft_vs_float64": big(peft[name] - exact[name]), "max_abs": big(exact[name])} for name in exact}


def _float64(peft_model: nn.Module, batch: Batch) -> tuple[nn.Module, Batch]:
    """A float64 copy of the PEFT model (the reference for float32 rounding) and the batch in float64."""
    import copy
    import dataclasses

    return copy.deepcopy(peft_model).double(), dataclasses.replace(batch, features=batch.features.double())


def _mixed_rows(load: Callable[[], ASRBackend], config, fn, batch: Batch, n: int, repeat: int, sync,
                precision: bool = False) -> list[dict]:
    """Our bank vs PEFT at a single adapter and at each of :data:`DISTINCT` speakers (of ``n`` loaded)."""
    rows = []
    for loaded, counts in ((1, ["single"]), (n, [d for d in DISTINCT if d <= n])):
        backend_a, backend_b = load(), load()
        bank = _bank(backend_a, config, loaded, seed=loaded)
        bank.adapted.eval()
        peft_model, layers = _peft_copy(bank, backend_b, fn)
        with torch.no_grad(), peft_model.disable_adapter():
            base = fn(backend_b, batch)
        for d in counts:
            index = torch.zeros(len(batch), dtype=torch.long) if d == "single" else torch.arange(len(batch)) % d
            names = [f"spk{int(i)}" for i in index]

            def ours(index: torch.Tensor = index) -> torch.Tensor:
                with torch.no_grad(), bank.adapted.route(index if loaded > 1 else None):
                    return fn(backend_a, batch)

            def peft(names: list[str] = names) -> torch.Tensor:
                with torch.no_grad():
                    return peft_model(batch) if loaded == 1 else peft_model(batch, adapter_names=names)

            def no_adapter() -> torch.Tensor:
                with torch.no_grad(), bank.adapted.disabled():
                    return fn(backend_a, batch)

            y_ours = ours()  # these calls are the warm-up as well (and the second one-speaker call: merged)
            y_ours = ours()
            y_peft = peft()
            diff, effect = float((y_ours - y_peft).abs().max()), float((y_ours - base).abs().max())
            no_adapter()
            t = compare_samples({"ours": ours, "peft": peft, "base": no_adapter}, repeat=repeat, warmup=0, sync=sync)
            rounds = [p / o for p, o in zip(t["peft"], t["ours"], strict=True)]
            row = {"distinct": d, "loaded": loaded, "layers": layers,
                   "ours_utt_per_s": len(batch) / statistics.median(t["ours"]),
                   "peft_utt_per_s": len(batch) / statistics.median(t["peft"]),
                   "base_utt_per_s": len(batch) / statistics.median(t["base"]),
                   "ours_s": spread(t["ours"]), "peft_s": spread(t["peft"]), "base_s": spread(t["base"]),
                   "ratio_rounds": spread(rounds), "max_abs_diff": diff, "max_abs_effect": effect,
                   "ours_over_base_rounds": spread([o / b for o, b in zip(t["ours"], t["base"], strict=True)]),
                   "peft_over_base_rounds": spread([p / b for p, b in zip(t["peft"], t["base"], strict=True)])}
            row["ratio"] = row["ours_utt_per_s"] / row["peft_utt_per_s"]
            row["ours_over_base"] = row["base_utt_per_s"] / row["ours_utt_per_s"]
            row["peft_over_base"] = row["base_utt_per_s"] / row["peft_utt_per_s"]
            if precision:  # where the float32 roundings part: per layer, against PEFT and against float64
                model64, batch64 = _float64(peft_model, batch)
                exact = _traced(model64.base_model.model.net,
                                lambda: model64(batch64) if loaded == 1 else model64(batch64, adapter_names=names))
                row["per_layer"] = _per_layer(_traced(backend_a.model, ours), _traced(backend_b.model, peft), exact)
                if d == "single":  # PEFT's own merge (merge_adapter) against PEFT unmerged: merging's rounding
                    peft_model.merge_adapter()
                    row["peft_merged_vs_peft"] = float((peft() - y_peft).abs().max())
                    peft_model.unmerge_adapter()  # not exactly the old weights (float32): nothing is timed after
                del model64, batch64
            rows.append(row)
            print(f"   {d!s:>6} distinct of {loaded:3d}: ours {row['ours_utt_per_s']:7.1f} utt/s, PEFT "
                  f"{row['peft_utt_per_s']:7.1f} utt/s ({row['ratio']:.2f}x; rounds {min(rounds):.2f}-"
                  f"{max(rounds):.2f}); no adapter {row['base_utt_per_s']:7.1f} utt/s (ours {row['ours_over_base']:.2f}x "
                  f"its time, PEFT {row['peft_over_base']:.2f}x); max |ours - PEFT| {diff:.1e} (LoRA moves outputs "
                  f"by {effect:.1e})", flush=True)
            if "per_layer" in row:
                logits = row["per_layer"]["logits"]
                worst = max(row["per_layer"].items(), key=lambda kv: kv[1]["ours_vs_peft"])
                merged = (f"; PEFT's own merge moves PEFT by {row['peft_merged_vs_peft']:.1e}"
                          if "peft_merged_vs_peft" in row else "")
                print(f"          from float64 (logits): ours {logits['ours_vs_float64']:.1e}, PEFT "
                      f"{logits['peft_vs_float64']:.1e}; largest |ours - PEFT| at {worst[0]} "
                      f"({worst[1]['ours_vs_peft']:.1e} of |x| <= {worst[1]['max_abs']:.0f}){merged}", flush=True)
        bank.adapted.remove()
    return rows


def _vector_rows(backend: ASRBackend, lora, fn, batch: Batch, n: int, repeat: int, sync) -> list[dict]:
    """The vector family on the LoRA's layers, ``n`` speakers loaded: its time over no adapter at 1 and ``n``
    distinct speakers in the batch, alternating with the base model, and its parameters per speaker."""
    from workbench.adapters import VectorConfig, inject

    rows = []
    for mode in VECTOR_MODES:
        cfg = VectorConfig(mode=mode, num_speakers=n, top_layers=lora.top_layers, decoder=lora.decoder)
        adapted = inject(backend, cfg)
        g = torch.Generator().manual_seed(n)
        with torch.no_grad():  # distinct scalings per speaker (a fresh vector adapter is the identity)
            for p in adapted.adapters.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=g))
        adapted.eval()
        with torch.no_grad(), adapted.disabled():
            base = fn(backend, batch)
        per_speaker = adapted.parameter_report()["per_speaker"]
        for d in [d for d in (1, n) if d <= n]:
            index = torch.arange(len(batch)) % d

            def ours(index: torch.Tensor = index) -> torch.Tensor:
                with torch.no_grad(), adapted.route(index):
                    return fn(backend, batch)

            def no_adapter() -> torch.Tensor:
                with torch.no_grad(), adapted.disabled():
                    return fn(backend, batch)

            ours()
            effect = float((ours() - base).abs().max())
            t = compare_samples({"vector": ours, "base": no_adapter}, repeat=repeat, warmup=1, sync=sync)
            row = {"mode": mode, "distinct": d, "loaded": n, "layers": len(adapted.adapters),
                   "per_speaker_parameters": per_speaker, "utt_per_s": len(batch) / statistics.median(t["vector"]),
                   "base_utt_per_s": len(batch) / statistics.median(t["base"]), "vector_s": spread(t["vector"]),
                   "base_s": spread(t["base"]), "max_abs_effect": effect,
                   "over_base_rounds": spread([v / b for v, b in zip(t["vector"], t["base"], strict=True)])}
            row["over_base"] = row["base_utt_per_s"] / row["utt_per_s"]
            rows.append(row)
            print(f"   vector ({mode}), {d:3d} distinct of {n}: {row['utt_per_s']:7.1f} utt/s, no adapter "
                  f"{row['base_utt_per_s']:7.1f} utt/s ({row['over_base']:.2f}x its time); {per_speaker:,} parameters "
                  f"per speaker; it moves outputs by {effect:.1e}", flush=True)
        adapted.remove()
    return rows


def bench_mixed_lora(model: str, device: str = "cpu", *, n: int = 64, repeat: int = 5,
                     seconds: float | None = None) -> dict:
    """Our bank vs PEFT on ``model`` ("tiny": the built-in model, or "whisper-tiny.en"), batches of ``n``
    utterances of about ``seconds`` (default 2.5 s for the built-in model, 2 s for Whisper)."""
    from workbench.adapters import LoRAConfig
    from workbench.models import load_base_model
    from workbench.training_defaults import train_settings_for

    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    reason = missing("peft") or (missing("transformers") if model != "tiny" else None)
    if reason is None:
        try:
            first = load_base_model(model, device=device)
        except (ImportError, OSError) as err:  # Whisper's weights (the whisper extra) are not installed
            reason = f"{model} not available ({err})"
    if reason is not None:
        print(f"mixed-speaker LoRA, {model}: {reason}", flush=True)
        return {"missing": reason}
    print(f"mixed-speaker LoRA, {model}, batches of {n}:", flush=True)
    load = lambda: load_base_model(model, device=device)  # noqa: E731
    if model == "tiny":
        seconds, config, fn = seconds or 2.5, LoRAConfig(), _builtin_scores
    else:
        seconds, config = seconds or 2.0, train_settings_for(first)["adapter"]
        fn = _whisper_scorer(["please turn on the kitchen light"] * n)
    batch = first.featurize(_waves(n, seconds, 0))
    rows = _mixed_rows(load, config, fn, batch, n, repeat, sync, precision=model != "tiny")
    from workbench.adapters import inject

    lora = inject(first, config.replace(num_speakers=1))
    lora_per_speaker = lora.parameter_report()["per_speaker"]
    lora.remove()
    return {"batch": n, "utterance_s": seconds, "frames": int(batch.features.shape[1]), "config": config.to_dict(),
            "rows": rows, "lora_per_speaker_parameters": lora_per_speaker,
            "vector": _vector_rows(first, config, fn, batch, n, repeat, sync)}


def wer_against_jiwer(n: int = 200, seed: int = 0) -> dict:
    """Our WER and CER against jiwer's on the sample prompts with random word edits (both after the
    workbench's text normalization): the largest difference, corpus-level and per utterance."""
    import jiwer

    from workbench.evaluate import cer, wer
    from workbench.prompts import load_prompts
    from workbench.text import normalize_text

    rng = random.Random(seed)
    refs = [normalize_text(t) for t in load_prompts()][:n]
    vocab = sorted({w for r in refs for w in r.split()})
    hyps = []
    for r in refs:
        words = [w for w in r.split() if rng.random() > 0.15]  # deletions
        words = [rng.choice(vocab) if rng.random() < 0.15 else w for w in words]  # substitutions
        hyps.append(" ".join(w + (" " + rng.choice(vocab) if rng.random() < 0.1 else "") for w in words) or vocab[0])
    per = max(abs(wer([r], [h]) - jiwer.wer(r, h)) for r, h in zip(refs, hyps, strict=True))
    out = {"utterances": len(refs), "wer": wer(refs, hyps),
           "max_abs_diff_corpus": abs(wer(refs, hyps) - jiwer.wer(refs, hyps)),
           "max_abs_diff_cer": abs(cer(refs, hyps) - jiwer.cer(refs, hyps)), "max_abs_diff_per_utterance": per}
    worst = max(out["max_abs_diff_corpus"], out["max_abs_diff_cer"], per)
    print(f"WER and CER against jiwer on {len(refs)} edited prompts: largest difference {worst:.1e}", flush=True)
    return out


def run(device: str = "cpu", quick: bool = False) -> dict:
    """SpecAugment, the built-in model's mixed-speaker LoRA and the WER against jiwer (the default suite)."""
    return {"machine": machine(device), "specaugment": bench_specaugment(device, quick),
            "mixed_lora": bench_mixed_lora("tiny", device, n=8 if quick else 64, repeat=3 if quick else 7),
            "wer_vs_jiwer": wer_against_jiwer(40 if quick else 200) if missing("jiwer") is None
            else {"missing": missing("jiwer")}}


def run_whisper(device: str = "cpu", quick: bool = False) -> dict:
    """Whisper tiny.en's mixed-speaker LoRA and vector adapters (opt-in: about 7 minutes)."""
    return {"machine": machine(device),
            "mixed_lora": bench_mixed_lora("whisper-tiny.en", device, n=8 if quick else 64, repeat=2 if quick else 5)}


def main(argv: list[str] | None = None) -> dict:
    return bench_main(__doc__, run, "peers", argv)


def main_whisper(argv: list[str] | None = None) -> dict:
    return bench_main(__doc__, run_whisper, "peers_whisper", argv)


if __name__ == "__main__":
    main()
