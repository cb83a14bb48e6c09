"""The pages of the therapist app (:mod:`workbench.app`), one module per page.

- :mod:`~workbench.app_pages.common`: server context, per-session state, safe paths, messages;
- :mod:`~workbench.app_pages.jobs`: training runs in background threads, one per speaker;
- :mod:`~workbench.app_pages.uploads`: uploaded recordings and transcript files into a speaker folder;
- :mod:`~workbench.app_pages.recorder`: the notebooks' browser recorder ESM hosted in Panel;
- one module per page: ``speakers``, ``record``, ``personalize``, ``results``, ``live``, ``speaker_map``.

Pages are :class:`panel.viewable.Viewer` objects whose logic methods (create a
speaker, save a take, start/stop training, show a report) are plain Python, so
tests drive them without a browser.
"""

__all__: list[str] = []
