"""Stage 5 of the recipe: WER/CER on the held-out sets and sample_data, decoder tuning, metrics.json, model card.

Evaluation items are ``(waveform (samples,) float32 at 16 kHz, text)``; real-time
factors are seconds of compute per second of audio.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from workbench.constants import SAMPLE_RATE
from workbench.errors import WorkbenchError

from . import REPO
from .data import DEV_SIZE, is_heldout


# ----------------------------------------------------------------------------- evaluation
def evaluate_backend(backend, items, decoders: dict, batch_size: int = 16) -> dict:
    import jiwer
    import torch

    refs = [t for _, t in items]
    wavs = [w for w, _ in items]
    out = {}
    # log-probs once, decoders many times
    pieces = []
    with torch.no_grad():
        t0 = time.time()
        for s in range(0, len(wavs), batch_size):
            lp, lens = backend.log_probs(backend.featurize(wavs[s : s + batch_size]))
            pieces += [lp[j, : lens[j]].numpy() for j in range(lp.shape[0])]
        t_enc = time.time() - t0
    audio_s = sum(len(w) for w in wavs) / SAMPLE_RATE
    for name, dec in decoders.items():
        t0 = time.time()
        hyps = [dec(p) for p in pieces]
        t_dec = time.time() - t0
        out[name] = {"wer": jiwer.wer(refs, hyps), "cer": jiwer.cer(refs, hyps),
                     "rtf": (t_enc + t_dec) / audio_s, "examples": list(zip(refs[:3], hyps[:3]))}
    out["n"] = len(items)
    out["audio_s"] = audio_s
    out["rtf_encoder"] = t_enc / audio_s
    return out


def sample_data_sets(root: Path) -> dict:
    try:
        from workbench.audio import load_audio  # noqa: F401
        from workbench.corpus import SpeakerCorpus
    except ImportError:
        return {}
    sets = {}
    if not root.is_dir():
        return sets
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            c = SpeakerCorpus.open(d)
            utts = list(c.utterances())
            sets[d.name] = [(np.asarray(c.load_audio(u), dtype=np.float32), u.transcript) for u in utts]
        except (WorkbenchError, OSError) as exc:  # a speaker folder that cannot be read: report and go on
            print(f"  skipping sample_data/{d.name}: {exc}")
    return sets


def make_decoders(meta: dict, prompts_all: list[str], params: dict | None = None):
    from workbench.decode import BeamSearchDecoder, Lexicon, WordLM, greedy_decode

    lm = WordLM.from_sentences(meta["train_phrases"])
    lex_all = Lexicon.from_sentences(prompts_all)  # the product's domain lexicon: every everyday word
    return {
        "greedy": greedy_decode,
        "lexicon_beam": BeamSearchDecoder(lex_all, lm, **{"beam": 12, **(params or {})}),
    }


def tune_decoder(backend, dev_items, meta: dict, prompts_all: list[str]) -> dict:
    """Grid-search lm_weight / word_bonus of the lexicon beam on the DEV set (not the eval sets)."""
    import jiwer
    import torch

    from workbench.decode import BeamSearchDecoder, Lexicon, WordLM

    with torch.no_grad():
        lp, lens = backend.log_probs(backend.featurize([w for w, _ in dev_items]))
    pieces = [lp[j, : lens[j]].numpy() for j in range(lp.shape[0])]
    refs = [t for _, t in dev_items]
    lm = WordLM.from_sentences(meta["train_phrases"])
    lex = Lexicon.from_sentences(prompts_all)
    best = None
    for lm_weight in (0.3, 0.5, 0.8, 1.2):
        for word_bonus in (0.0, 1.0, 2.0, 3.0):
            dec = BeamSearchDecoder(lex, lm, beam=12, lm_weight=lm_weight, word_bonus=word_bonus)
            wer = jiwer.wer(refs, [dec(p) for p in pieces])
            if best is None or wer < best[0] - 1e-9:
                best = (wer, {"lm_weight": lm_weight, "word_bonus": word_bonus})
    print(f"decoder tuned on dev: {best[1]} (dev WER {best[0]:.3f})", flush=True)
    return {**best[1], "dev_wer": best[0]}


def run_eval(args, data, out_dir: Path, train_info: dict | None):
    import torch

    from workbench.models.tiny import load_tiny
    from workbench.prompts import load_prompts

    torch.set_num_threads(args.threads)
    t0 = time.time()
    backend = load_tiny(out_dir)
    load_s = time.time() - t0
    tuned = tune_decoder(backend, data["dev"], data["meta"], load_prompts("everyday"))
    decoders = make_decoders(data["meta"], load_prompts("everyday"),
                             {k: v for k, v in tuned.items() if k in ("lm_weight", "word_bonus")})
    cfg_path = out_dir / "config.json"
    cfg_json = json.loads(cfg_path.read_text())
    cfg_json["decoder"] = {"beam": 12, **tuned}  # defaults for lexicon-beam decoding with this model
    cfg_path.write_text(json.dumps(cfg_json, indent=2) + "\n")
    results = {
        "heldout_texts_training_voices": evaluate_backend(backend, data["eval_train_voices"], decoders),
        "heldout_voices_heldout_texts": evaluate_backend(backend, data["eval_heldout_voices"], decoders),
    }
    for name, items in sample_data_sets(REPO / "sample_data").items():
        results[f"sample_data/{name}"] = evaluate_backend(backend, items, decoders)
    # batched RTF over the held-out-voice set (transcribe path, greedy)
    wavs = [w for w, _ in data["eval_heldout_voices"]]
    t0 = time.time()
    backend.transcribe(wavs, batch_size=32)
    rtf = (time.time() - t0) / (sum(len(w) for w in wavs) / SAMPLE_RATE)
    for k, v in results.items():
        print(f"{k:45s} n={v['n']:4d}  greedy WER {v['greedy']['wer']:.3f} CER {v['greedy']['cer']:.3f}  "
              f"lexicon-beam WER {v['lexicon_beam']['wer']:.3f} CER {v['lexicon_beam']['cer']:.3f}", flush=True)
    print(f"load {load_s:.2f} s, batched RTF (greedy, batch 32) {rtf:.4f}")
    metrics = {"results": results, "load_s": load_s, "decoder": tuned, "rtf_batched_greedy": rtf,
               "threads": torch.get_num_threads(), "fingerprint": backend.fingerprint()}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n")
    write_card(out_dir, backend, data, metrics, train_info, args)
    return metrics


def _set_note(key: str) -> str:
    """Profile and voice of a sample_data speaker, and whether its base voice was held out."""
    if key == "heldout_texts_training_voices":
        return "training voices, unseen phrases"
    if key == "heldout_voices_heldout_texts":
        return "unseen voices, unseen phrases"
    try:
        from workbench import simulate

        info = json.loads((REPO / key / "speaker.json").read_text())["profile"]
        voice = simulate.Voice.parse(info["voice"])
        held = "held-out voice" if is_heldout(voice) else "training base voice"
        return f"{info.get('profile_spec', '?')}, {voice.spec()} ({held})"
    except (OSError, ValueError, KeyError, TypeError):  # a note only: no speaker.json, or not a simulated one
        return ""


def write_card(out_dir: Path, backend, data, metrics, train_info, args):
    meta = data["meta"]
    res = metrics["results"]
    rows = "\n".join(
        f"| {k} | {_set_note(k)} | {v['n']} | {v['greedy']['wer']:.3f} | {v['greedy']['cer']:.3f} | "
        f"{v['lexicon_beam']['wer']:.3f} | {v['lexicon_beam']['cer']:.3f} |" for k, v in res.items())
    ti = train_info or json.loads((out_dir / "config.json").read_text()).get("training", {})
    cfg = dataclasses.asdict(backend.config)
    card = f"""# workbench-tiny

Built-in base ASR model of the workbench: a compact Conformer-CTC over 80-dim log-mel
(4x conv subsampling, rotary self-attention, {cfg['num_layers']} blocks of width {cfg['d_model']},
{cfg['num_heads']} heads, conv kernel {cfg['conv_kernel']}), character CTC (blank, space, a-z, ').
{backend.num_parameters() / 1e6:.2f} M parameters, safetensors.

**Purpose.** A frozen, offline base model to personalise with small adapters for people with
atypical speech. It is trained on SYNTHETIC typical speech only (espeak-ng / flite / festival
voices) and is NOT a general-purpose recogniser: expect poor accuracy on real microphones
and out-of-domain text. WER here is ASR accuracy, not a clinical intelligibility score.

## Training data
- Text: the everyday prompt list (`workbench/data/prompts/everyday.txt`), split with seed {args.seed}:
  {len(meta['train_phrases'])} training phrases, {len(meta['heldout_phrases'])} held-out phrases never synthesised for
  training. Training texts: training phrases (55 %), random strings of the {len(meta['train_words'])} training words (30 %),
  splices of two training phrases (15 %).
- Voices: {meta['n_train_voices']} typical voices from `workbench.simulate.random_voice`; voices matching
  {meta['heldout_voice_rule']} are held out entirely ({meta['n_heldout_voices']} held-out voices).
- {len(data['train'])} utterances, {data['train_hours']:.1f} h; speed perturbation x0.85-1.15, gain, white/pink noise at
  5-40 dB SNR (p=0.6), 8 kHz band-limiting (p=0.1); SpecAugment `{args.policy}` + mel-axis warp (VTLP-like) on the fly.
- No real speech was used (see recipes/README.md on the asterisk prompts option).

## Training
`python recipes/pretrain_tiny.py --minutes {args.minutes:g}` on a 2-core CPU (bf16 autocast), AdamW
(lr {args.lr:g}, warm-up {args.warmup} steps, cosine over the time budget), grad clip {args.clip}.
Steps: {ti.get('step', '?')}, wall time {ti.get('elapsed', 0) / 60:.1f} min, best checkpoint at step {ti.get('best_step', '?')}
(by greedy CER on a {DEV_SIZE}-utterance dev set of held-out voices).

## Evaluation (seed {args.seed})
Decoders: `greedy` = best path; `lexicon_beam` = CTC prefix beam search (beam 12) restricted to the
everyday-phrase vocabulary with a word bigram LM built from the TRAINING phrases only (held-out phrases
are not in the LM); LM weight and word bonus tuned on the dev set ({metrics.get('decoder', {})}).

| set | what | utts | greedy WER | greedy CER | lexicon-beam WER | lexicon-beam CER |
|---|---|---|---|---|---|---|
{rows}

Load time {metrics['load_s']:.2f} s; batched real-time factor (greedy, batch 32, {metrics['threads']} threads)
{metrics['rtf_batched_greedy']:.4f}. Fingerprint `{metrics['fingerprint'][:16]}`.

## Limitations
Synthetic voices only; unseen TTS voices are much harder than seen ones; vocabulary outside the
everyday list is spelled character by character (use `unknown="penalize"` or boost words).
"""
    (out_dir / "model_card.md").write_text(card)
