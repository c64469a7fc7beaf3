"""Classifier packs a server serves: loaded by the operator, chosen by clients by name (pure).

Packs are server-side only. ``earmark serve --pack`` loads the files; a client
(the REST API, the page) only ever picks one of the loaded packs by its name, so
nothing a client sends is used as a path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .errors import UnknownPack

if TYPE_CHECKING:
    from ..adapt.packs import ClassifierPack
    from ..classify import Classifier

__all__ = ["TRAINING_KEYS", "check_packs", "pack_summary", "pick_pack"]

# what clients see of a pack's training summary; the rest (e.g. the training data's location) stays private
TRAINING_KEYS = (
    "method",
    "examples",
    "cv_folds",
    "cv_accuracy",
    "cv_macro_f1",
    "zero_shot_accuracy",
    "zero_shot_macro_f1",
    "target_precision",
    "fitted_at",
)


def check_packs(classifier: Classifier, packs: Mapping[str, ClassifierPack]) -> dict[str, ClassifierPack]:
    """The packs, each checked to run on ``classifier``'s model.

    Raises:
        ConfigError: a pack was fitted on another model, or a name is blank.
    """
    for name, pack in packs.items():
        if not name.strip():
            raise ConfigError("a classifier pack needs a name")
        try:
            pack.check(classifier)
        except ConfigError as ex:
            raise ConfigError(f"classifier pack {name!r}: {ex}") from None
    return dict(packs)


def pick_pack(packs: Mapping[str, ClassifierPack], name: str | None) -> ClassifierPack | None:
    """The served pack called ``name``; ``None`` for no name (zero-shot).

    Raises:
        UnknownPack: no served pack has that name (the message lists those that are served).
    """
    if name is None or not name.strip():
        return None
    pack = packs.get(name.strip())
    if pack is None:
        served = ", ".join(sorted(packs)) if packs else "none"
        raise UnknownPack(
            f"no classifier pack named {name.strip()[:80]!r} is served here; served packs: {served}"
        )
    return pack


def pack_summary(name: str, pack: ClassifierPack) -> dict[str, Any]:
    """What clients may know of a served pack (``GET /api/v1/packs``)."""
    training = {k: pack.training[k] for k in TRAINING_KEYS if k in pack.training}
    return {
        "name": name,
        "labels": list(pack.labels),
        "model": pack.model,
        "digest": pack.digest,
        "examples": dict(training.get("examples") or {}),
        "cv_accuracy": training.get("cv_accuracy"),
        "label_thresholds": dict(pack.label_thresholds),
        "training": training,
    }
