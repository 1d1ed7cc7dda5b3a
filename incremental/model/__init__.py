"""The model: the ranker, the training loop, the update from the champion, training examples, replay, propensities."""

from typing import Any


def __getattr__(name: str) -> Any:
    # Versions logged before the package was laid out by stage pickled their pyfunc as
    # `incremental.model.RankerPyfunc` (model.py was a module then): they still load.
    if name == "RankerPyfunc":
        from incremental.model.ranker import RankerPyfunc

        return RankerPyfunc
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
