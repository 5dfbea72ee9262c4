"""The model and the process that keeps it warm.

``FinbertWorker`` is imported on first use, so that importing ``model.visible_text`` (say, from the
enqueuer) does not import torch.
"""


def __getattr__(name: str):
    if name == "FinbertWorker":
        from workers.worker import FinbertWorker

        return FinbertWorker
    raise AttributeError(f"module 'workers' has no attribute {name!r}")
