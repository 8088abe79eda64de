"""Training objectives as pure functions on tensors: the losses (:mod:`.losses`) and token masks
(:mod:`.masking`) of every stage. They sit below the models (a model's ``forward`` may compute its
objective) and import nothing from the rest of the package."""
