"""Repository-wide pytest settings: offline, and small notebook settings.

Set here (not in tests/conftest.py) so the notebook kernels that nbmake starts
inherit them too.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing downloads at test time
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WORKBENCH_FAST", "1")  # notebooks show this flag and use small settings
os.environ.setdefault("MPLBACKEND", "Agg")
