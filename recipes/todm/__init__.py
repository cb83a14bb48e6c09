"""Pieces of ``recipes/train_supernet.py`` (TODM, issue 18); run that script, see its docstring.

- :mod:`.export`: the chosen sizes as fp16 model folders, their evaluation on the pretraining
  recipe's held-out voices and phrases and on ``sample_data/``, RTF on this machine, model cards,
  and the comparison table of several runs.
"""
