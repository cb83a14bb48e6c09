"""The former name of :mod:`workbench.metrics` (WER/CER, alignments, before/after, intervals).

Existing imports (``from workbench.evaluate import wer`` in notebooks and benchmarks) keep working;
new code imports :mod:`workbench.metrics`. The ``evaluate`` command is :mod:`workbench.workflow.evaluation`.

>>> import workbench.metrics
>>> wer is workbench.metrics.wer
True
"""

from workbench.metrics import *  # noqa: F403
from workbench.metrics import __all__  # noqa: F401
