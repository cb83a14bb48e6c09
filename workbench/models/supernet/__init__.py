"""The built-in model as a supernet (TODM): the model and its sizes (:mod:`.model`), the sandwich step
(:mod:`.sandwich`) and its distillation losses (:mod:`.distill`), the installed sizes and the pick for a
real-time budget (:mod:`.sizes`), and one LoRA cut for every size (:mod:`.adapters`).

Nothing is re-exported here, so importing one module loads only what it needs.
"""
