"""The RQ worker process that keeps the model warm (``worker.FinbertWorker``) and rides out outages
(``outage``).

``FinbertWorker`` is imported on first use (``rq worker -w workers.FinbertWorker``), so that importing
this package imports neither RQ's worker nor torch.
"""


def __getattr__(name: str):
    if name == "FinbertWorker":
        from workers.worker import FinbertWorker

        return FinbertWorker
    raise AttributeError(f"module 'workers' has no attribute {name!r}")
