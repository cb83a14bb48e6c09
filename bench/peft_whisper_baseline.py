"""What a user would write instead of the workbench: Whisper tiny.en + PEFT LoRA + transformers ``Seq2SeqTrainer``.

Written the way the Hugging Face blog posts "Fine-Tune Whisper For Multilingual ASR with
Transformers" and "Parameter-Efficient Fine-Tuning of Whisper with PEFT" do it, on a CPU:
``WhisperProcessor`` features (each recording padded to Whisper's 30 s window), the blog's
``DataCollatorSpeechSeq2SeqWithPadding``, ``LoraConfig`` + ``get_peft_model``,
``Seq2SeqTrainingArguments`` with ``predict_with_generate`` and a WER ``compute_metrics``,
the best checkpoint by validation WER, early stopping. No 8-bit loading (CPU).

The settings are the workbench's defaults for Whisper tiny.en, as far as the APIs allow
(:func:`matched_settings`): LoRA rank 8, alpha 16, on every linear layer of the top half of
the encoder and of the decoder; learning rate 1e-3, batch 8, 10 warm-up steps then cosine
decay to 10 % over 400 steps, gradient clipping at 1.0, an evaluation every 10 steps (and
one at the start), early stopping after 5 evaluations without a lower validation WER. What
the workbench does and this script does not: speed perturbation of the training recordings
(0.9x, 1.1x), the short "auto" encoding window, the cached bottom half of the encoder, the
checkpoint with the lowest validation *loss*. WER uses the workbench's text normalization
(``workbench.text.normalize_text``) and jiwer, so both sides are scored alike.

The weights: a user would call ``WhisperForConditionalGeneration.from_pretrained(
"openai/whisper-tiny.en")``; this machine is offline, so the same weights come from the
workbench's own wheel (:func:`load_whisper`).

Run by hand on one speaker folder (``three_way_split`` as the workbench splits it):
``python bench/peft_whisper_baseline.py sample_data/sim-dysarthria-severe --out /tmp/peft-run``.
``bench/bench_peers_training.py`` runs it side by side with the workbench's Trainer.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from workbench.models import ASRBackend

__all__ = ["DataCollatorSpeechSeq2SeqWithPadding", "load_whisper", "matched_settings", "train_and_evaluate"]

MODEL = "whisper-tiny.en"


def load_whisper() -> tuple[Any, Any]:
    """``(WhisperForConditionalGeneration, WhisperProcessor)`` of tiny.en, trainable (a fresh copy)."""
    from workbench.models import load_base_model

    backend = load_base_model(MODEL)
    model = backend.model
    for p in model.parameters():
        p.requires_grad_(True)  # get_peft_model freezes what is not LoRA
    gen = model.generation_config
    for key in ("lang_to_id", "task_to_id"):  # an English-only model's hub config has neither key; the
        if key in gen.__dict__ and gen.__dict__[key] is None:  # import writes null, which generate() trips on
            delattr(gen, key)
    processor = copy.deepcopy(backend.processor)
    if processor.tokenizer.pad_token is None:  # as in the hub's openai/whisper-tiny.en tokenizer
        processor.tokenizer.pad_token = processor.tokenizer.eos_token
    return model, processor


def matched_settings(backend: ASRBackend | None = None) -> dict[str, Any]:
    """The workbench's default training settings for Whisper tiny.en (``backend``: its loaded
    backend, else it is loaded), as this script uses them."""
    from workbench.models import load_base_model
    from workbench.workflow import default_config

    backend = backend or load_base_model(MODEL)
    c = default_config(backend)
    a = c.adapter
    n_layers = backend.num_layers
    first = n_layers - a.top_layers if a.top_layers else 0
    encoder_layers = "|".join(str(i) for i in range(first, n_layers))
    blocks = [rf"model\.encoder\.layers\.({encoder_layers})"] + ([r"model\.decoder\.layers\.\d+"] if a.decoder else [])
    linears = {"all": r"(self_attn|encoder_attn)\.(q|k|v|out)_proj|fc1|fc2",
               "attention": r"(self_attn|encoder_attn)\.(q|k|v|out)_proj", "ffn": r"fc1|fc2"}[a.targets]
    return {"rank": a.rank, "alpha": a.alpha, "dropout": a.dropout,
            "target_modules": rf"({'|'.join(blocks)})\.({linears})",
            "learning_rate": c.learning_rate, "batch_size": c.batch_size, "warmup_steps": c.warmup_steps,
            "max_steps": c.max_steps, "eval_every": c.eval_every, "patience": c.patience, "grad_clip": c.grad_clip,
            "weight_decay": c.weight_decay, "seed": c.seed}


class _Speech(torch.utils.data.Dataset):
    """``{"input_features": (80, 3000), "labels": token ids}`` per recording, like the blog's ``prepare_dataset``."""

    def __init__(self, processor: Any, wavs: Sequence[np.ndarray], texts: Sequence[str]) -> None:
        from workbench.constants import SAMPLE_RATE

        self.items = [{"input_features": processor.feature_extractor(w, sampling_rate=SAMPLE_RATE).input_features[0],
                       "labels": processor.tokenizer(t).input_ids} for w, t in zip(wavs, texts, strict=True)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


@dataclasses.dataclass
class DataCollatorSpeechSeq2SeqWithPadding:
    """The blog's collator: pad the features and the labels (-100 on padding), drop a leading start token."""

    processor: Any
    decoder_start_token_id: int

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        inputs = [{"input_features": f["input_features"]} for f in features]
        batch = self.processor.feature_extractor.pad(inputs, return_tensors="pt")
        labels_batch = self.processor.tokenizer.pad([{"input_ids": f["labels"]} for f in features], return_tensors="pt")
        labels = labels_batch["input_ids"].masked_fill(labels_batch.attention_mask.ne(1), -100)
        if (labels[:, 0] == self.decoder_start_token_id).all().cpu().item():
            labels = labels[:, 1:]
        batch["labels"] = labels
        return batch


def train_and_evaluate(model: Any, processor: Any, train: Sequence[tuple[np.ndarray, str]],
                       valid: Sequence[tuple[np.ndarray, str]], test: Sequence[tuple[np.ndarray, str]],
                       out_dir: str | Path, settings: dict[str, Any], *, t0: float | None = None,
                       time_limit_s: float | None = None, test_before: bool = False) -> dict[str, Any]:
    """Fine-tune ``model`` with PEFT LoRA on ``train``, choose on ``valid``, score ``test``.

    Args:
        train, valid, test: ``(waveform at 16 kHz, transcript)`` pairs.
        settings: :func:`matched_settings` (or your own).
        t0: ``time.perf_counter()`` the wall times count from (default: now; features included).
        time_limit_s: stop after this many seconds of wall time (a benchmark's bound; a user
            would not set it).
        test_before: also score the test recordings before training.

    Returns:
        ``evals``: one ``{"step", "wer", "loss", "wall_s"}`` per validation evaluation;
        ``test_wer`` (and ``test_wer_before``), ``steps``, ``wall_s``, ``best_step``, ``stopped``.
    """
    import jiwer
    from peft import LoraConfig, get_peft_model
    from transformers import EarlyStoppingCallback, Seq2SeqTrainer, Seq2SeqTrainingArguments, TrainerCallback

    from workbench.text import normalize_text

    clock = {"t0": time.perf_counter() if t0 is None else t0, "bound": False}
    s = settings
    sets = {name: _Speech(processor, [w for w, _ in pairs], [t for _, t in pairs])
            for name, pairs in (("train", train), ("valid", valid), ("test", test))}
    lora = LoraConfig(r=s["rank"], lora_alpha=s["alpha"], target_modules=s["target_modules"],
                      lora_dropout=s["dropout"], bias="none")
    model = get_peft_model(model, lora)

    def compute_metrics(pred: Any) -> dict[str, float]:
        pred_ids, label_ids = pred.predictions, pred.label_ids
        label_ids[label_ids == -100] = processor.tokenizer.pad_token_id
        hyps = processor.tokenizer.batch_decode(pred_ids, skip_special_tokens=True)
        refs = processor.tokenizer.batch_decode(label_ids, skip_special_tokens=True)
        return {"wer": jiwer.wer([normalize_text(r) for r in refs], [normalize_text(h) or "" for h in hyps])}

    evals: list[dict[str, Any]] = []

    class Clock(TrainerCallback):  # the wall time of every evaluation (and the benchmark's bound)
        def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # noqa: ANN001 - transformers' API
            if metrics and "eval_wer" in metrics:
                evals.append({"step": state.global_step, "wer": metrics["eval_wer"], "loss": metrics.get("eval_loss"),
                              "wall_s": time.perf_counter() - clock["t0"]})

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001 - transformers' API
            if time_limit_s is not None and time.perf_counter() - clock["t0"] > time_limit_s:
                control.should_training_stop = clock["bound"] = True

    args = Seq2SeqTrainingArguments(
        output_dir=str(out_dir), per_device_train_batch_size=s["batch_size"], per_device_eval_batch_size=16,
        learning_rate=s["learning_rate"], warmup_steps=s["warmup_steps"], max_steps=s["max_steps"],
        lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": 0.1},
        max_grad_norm=s["grad_clip"], weight_decay=s["weight_decay"],
        eval_strategy="steps", eval_steps=s["eval_every"], eval_on_start=True,
        save_strategy="steps", save_steps=s["eval_every"], save_total_limit=2,
        load_best_model_at_end=True, metric_for_best_model="wer", greater_is_better=False,
        predict_with_generate=True, generation_max_length=128, logging_steps=s["eval_every"],
        remove_unused_columns=False, label_names=["labels"],  # as the PEFT blog says for a PeftModel
        use_cpu=True, dataloader_num_workers=0, seed=s["seed"], report_to=[], disable_tqdm=True)
    trainer = Seq2SeqTrainer(
        model=model, args=args, train_dataset=sets["train"], eval_dataset=sets["valid"],
        data_collator=DataCollatorSpeechSeq2SeqWithPadding(processor, model.config.decoder_start_token_id),
        compute_metrics=compute_metrics, processing_class=processor.feature_extractor,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=s["patience"]), Clock()])
    out: dict[str, Any] = {}
    if test_before:  # the untrained model's test score: not part of the run's time
        t_before = time.perf_counter()
        out["test_wer_before"] = trainer.predict(sets["test"], metric_key_prefix="test").metrics["test_wer"]
        clock["t0"] += time.perf_counter() - t_before
    result = trainer.train()
    steps = result.global_step
    stopped = "time bound" if clock["bound"] else ("early stop" if steps < s["max_steps"] else "max steps")
    out.update({"evals": evals, "steps": steps, "wall_s": time.perf_counter() - clock["t0"], "stopped": stopped,
                "best_step": int(str(trainer.state.best_model_checkpoint or "-0").rsplit("-", 1)[-1])})
    out["test_wer"] = trainer.predict(sets["test"], metric_key_prefix="test").metrics["test_wer"]
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("speaker_dir", help="a SpeakerCorpus folder (read only)")
    parser.add_argument("--out", required=True, help="where the Trainer writes its checkpoints")
    parser.add_argument("--max-train", type=int, default=50)
    args = parser.parse_args(argv)
    from workbench.corpus import SpeakerCorpus
    from workbench.dataset import examples_from_corpus
    from workbench.workflow import three_way_split

    corpus = SpeakerCorpus.open(args.speaker_dir)
    splits = [[(e.wav, e.text) for e in examples_from_corpus(corpus, part)]
              for part in three_way_split(corpus, max_train=args.max_train)]
    model, processor = load_whisper()
    out = train_and_evaluate(model, processor, *splits, args.out, matched_settings(), test_before=True)
    print(f"{out['steps']} steps in {out['wall_s']:.0f} s ({out['stopped']}); test WER "
          f"{100 * out['test_wer_before']:.1f}% -> {100 * out['test_wer']:.1f}%")
    return out


if __name__ == "__main__":
    main()
