"""Each base model's training defaults come from one table outside the models (issue 31: ``models/base.py``
imported ``adapters.LoRAConfig``, so the base models knew the adapters)."""

from __future__ import annotations

import dataclasses

from _models import tiny_backend
from test_import_cycles import import_graph

from workbench.adapters import LoRAConfig
from workbench.trainer import TrainConfig
from workbench.training_defaults import TRAIN_SETTINGS, WHISPER_LORA_LR, train_settings_for
from workbench.workflow import default_config


def test_a_ctc_model_gets_lora_on_the_encoder_at_the_familys_rate() -> None:
    backend = tiny_backend()
    assert backend.model_type == "ctc"
    assert train_settings_for(backend) == {"adapter": LoRAConfig()}
    config = default_config(backend)
    assert config.adapter == LoRAConfig() and config.learning_rate == TrainConfig().learning_rate


def test_whisper_gets_lora_on_every_layer_and_the_decoder_at_its_own_rate() -> None:
    backend = tiny_backend()  # only what the table reads of a Whisper backend: its type and depth
    backend.model_type, backend.num_layers = "whisper", 4
    assert train_settings_for(backend) == {"adapter": LoRAConfig(rank=4, alpha=8.0, top_layers=0, decoder=True),
                                          "learning_rate": WHISPER_LORA_LR}
    config = default_config(backend)
    assert (config.adapter.top_layers, config.adapter.decoder, config.learning_rate) == (0, True, 1e-3)
    assert (config.adapter.rank, config.adapter.scale) == (4, 2.0)  # stage 2 of the study: rank 4, LoRA's scale
    # naming an adapter drops the table's learning rate too (the family's own applies)
    assert default_config(backend, adapter=LoRAConfig()).learning_rate == TrainConfig().learning_rate


def test_the_whisper_backend_declares_its_type() -> None:
    from workbench.models.whisper.backend import WhisperBackend

    assert WhisperBackend.model_type == "whisper" and set(TRAIN_SETTINGS) == {"ctc", "whisper"}


def test_a_wrapped_backend_gets_the_wrapped_models_defaults() -> None:
    """The Device Tuning server's backend forwards attributes to the backend it wraps (as before, when the
    settings were a method of the backend)."""

    @dataclasses.dataclass
    class Wrapper:
        inner: object

        def __getattr__(self, name: str):
            return getattr(self.inner, name)

    backend = tiny_backend()
    backend.model_type, backend.num_layers = "whisper", 6
    assert train_settings_for(Wrapper(backend)) == train_settings_for(backend)
    assert train_settings_for(Wrapper(backend))["adapter"].decoder


def test_an_unknown_model_type_gets_the_ctc_defaults() -> None:
    backend = tiny_backend()
    backend.model_type = "something-new"
    assert train_settings_for(backend) == {"adapter": LoRAConfig()}


def test_the_base_models_import_no_adapter() -> None:
    """Only ``supernet.adapters`` (one LoRA cut for every size of the supernet) is about adapters."""
    graph = import_graph()
    upward = {m: sorted(e for e in edges if e.startswith("workbench.adapters"))
              for m, edges in graph.items() if m.startswith("workbench.models")}
    assert {m: e for m, e in upward.items() if e} == {
        # importing workbench.adapters.adapted runs workbench/adapters/__init__.py: an edge of its own (3d6cfeb)
        "workbench.models.supernet.adapters": ["workbench.adapters", "workbench.adapters.adapted",
                                               "workbench.adapters.io"]}
