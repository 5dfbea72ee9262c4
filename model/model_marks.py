"""How a model with random weights is marked: in its ``config.json``, and in every ``model_version`` it writes.

``tools.random_model`` sets the config key on the models it builds; the classifier reads it at load and
puts RANDOM_WEIGHTS_TAG in its ``model_version``, which every classification row stores. Reports then flag
those rows as meaningless. Importing this module imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Mapping

#: key in a model's config.json: true when its weights are random (labels are meaningless).
RANDOM_WEIGHTS_KEY = "volfefe_random_weights"
#: the ``+``-separated part of a model_version (``<model>+random-weights+<precision>``) that marks random weights.
RANDOM_WEIGHTS_TAG = "random-weights"


def config_has_random_weights(config: object) -> bool:
    """Whether a model's config carries the mark ``tools.random_model`` writes."""
    return getattr(config, RANDOM_WEIGHTS_KEY, False) is True


def has_random_weights(model_version: str) -> bool:
    """True when ``model_version`` names a model with random weights."""
    return RANDOM_WEIGHTS_TAG in model_version.split("+")[1:]


def random_weight_count(versions: Mapping[str, int]) -> int:
    """How many of the classifications counted per model_version in ``versions`` had random weights."""
    return sum(count for version, count in versions.items() if has_random_weights(version))


def random_weights_warning(count: int) -> list[str]:
    """The line every report and summary prints when ``count`` > 0 classifications are meaningless."""
    if not count:
        return []
    return [f"warning: {count} classifications were made by a model with random weights (meaningless labels)"]
