"""The peer libraries that bench/ measures the workbench against: how to import each, and how to install it.

Every peer is optional (the ``bench`` extra). :func:`missing` says which are absent and the
command that installs them, so a benchmark row or a test can say so instead of failing.

SpeechBrain is special: its wheel depends on torchaudio, whose wheels do not load with
torch 2.13 on CPU and then break ``import transformers``. It is therefore installed with
``pip install --no-deps`` (:data:`SPEECHBRAIN_INSTALL`), and only its torch-only module
``speechbrain/augment/freq_domain.py`` is loaded, from its file: importing
``speechbrain.augment`` would run ``speechbrain/__init__.py``, which imports torchaudio.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

__all__ = ["INSTALL", "SPEECHBRAIN_INSTALL", "missing", "speechbrain_freq_domain"]

#: Never torchaudio: SpeechBrain's SpectrogramDrop needs torch only.
SPEECHBRAIN_INSTALL = 'pip install --no-deps "speechbrain==1.1.2"'

#: peer module -> the command that installs it
INSTALL = {
    "lhotse": 'pip install -e ".[bench]"',
    "peft": 'pip install -e ".[bench]"',
    "ctranslate2": 'pip install -e ".[bench]"',
    "pocketsphinx": 'pip install -e ".[bench]"',
    "speechbrain": SPEECHBRAIN_INSTALL,
    "transformers": 'pip install -e ".[whisper]"',
}


def missing(*modules: str) -> str | None:
    """None when every named peer imports; otherwise a sentence naming the absent ones and how to install them.

    >>> missing("json") is None
    True
    """
    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    if not absent:
        return None
    how = sorted({INSTALL.get(m, f"pip install {m}") for m in absent})
    return f"{', '.join(absent)} not installed ({'; '.join(how)})"


def speechbrain_freq_domain() -> ModuleType:
    """SpeechBrain's ``augment/freq_domain.py`` (``SpectrogramDrop``), loaded from its file without
    running ``speechbrain/__init__.py`` (which imports torchaudio)."""
    spec = importlib.util.find_spec("speechbrain")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"speechbrain is not installed ({SPEECHBRAIN_INSTALL})")
    path = Path(list(spec.submodule_search_locations)[0]) / "augment" / "freq_domain.py"
    if not path.is_file():
        raise ModuleNotFoundError(f"this speechbrain has no {path.name}: install the tested version "
                                  f"({SPEECHBRAIN_INSTALL})")
    mod_spec = importlib.util.spec_from_file_location("_speechbrain_freq_domain", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module
