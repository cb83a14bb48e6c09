"""Whisper as a base model: the backend (:mod:`.backend`), the offline weights (:mod:`.weights`) and the
import of CTranslate2's ``model.bin`` (:mod:`.ct2`).

Nothing is re-exported here, so importing :mod:`.weights` (the model names, the offline check) never
loads the backend or transformers; load a Whisper model with :func:`workbench.models.load_base_model`.
"""
