"""Live use of the personal model: streaming captions and the corrections that teach it.

The core of the use branch (no UI imports; the app page, the notebook and
``workbench listen`` only render its events)::

    microphone -> chunks -> StreamingRecognizer [base + Submodel] -> CaptionEvent
        -> (say it back | correct -> save_correction -> corpus take -> next personalization)

Modules, one idea each:

* :mod:`~workbench.live.events`: :class:`CaptionEvent` (partial / commit) and :class:`Word`;
* :mod:`~workbench.live.vad`: where the speech is (webrtcvad + an adaptive noise floor);
* :mod:`~workbench.live.policy`: when a word is final (LocalAgreement-2);
* :mod:`~workbench.live.decoders`: one decode of the buffer (Whisper with a forced prefix and its
  silence detector; CTC with frame times);
* :mod:`~workbench.live.stream`: :class:`StreamingRecognizer`, the loop, its clock and its bounds;
* :mod:`~workbench.live.opening`: :func:`open_recognizer`, the speaker's personal model and why;
* :mod:`~workbench.live.corrections`: :func:`save_correction`, a corrected caption as a take from use;
* :mod:`~workbench.live.listen`: the ``workbench listen`` command.
* :mod:`~workbench.live.voice`: say it back in a clear offline voice.

>>> from workbench.live import CaptionEvent
>>> CaptionEvent("commit", "hello", 0.2, 0.6, 1.1).to_json()
{'event': 'commit', 'text': 'hello', 'start': 0.2, 'end': 0.6, 'emitted': 1.1}
"""

from workbench.live.corrections import USE_SOURCE, from_use, save_correction
from workbench.live.events import CaptionEvent, Word
from workbench.live.opening import open_recognizer
from workbench.live.stream import StreamingRecognizer

__all__ = ["USE_SOURCE", "CaptionEvent", "StreamingRecognizer", "Word", "from_use", "open_recognizer",
           "save_correction"]
