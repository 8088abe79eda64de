"""Training: one engine for every recipe (``engine``), typed run configs (``config``), the task registry
(``tasks``), torch.distributed helpers (``distributed``), optimizer groups and schedules (``optim``), atomic
checkpoints (``checkpoint``), deterministic data order (``data``) and the ``internvideo2 train`` command
(``cli``). Nothing is imported here, so the inference library never pays for training imports; see
docs/training.md.
"""
