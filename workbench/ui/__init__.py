"""Jupyter widgets: thin views over the headless core.

Each widget owns only view state and calls core functions; its logic is a plain
Python class that tests drive without a browser. Needs ``pip install 'workbench[ui]'``.
"""

__all__: list[str] = []
