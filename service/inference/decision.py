"""The operating point a served model decides with: the card's binary threshold, or its override."""

from service.contract import DecisionThreshold, ModelCard
from service.contract.model_card import binary_threshold
from service.store.errors import ModelLoadError


def serving_threshold(card: ModelCard, override: float | None) -> DecisionThreshold | None:
    """The card's threshold for a binary model, or the deployment's override of it, said as such."""
    threshold = binary_threshold(card)
    if override is None:
        return threshold
    if threshold is None:
        raise ModelLoadError(
            "CXR_DECISION_THRESHOLD is set, but the model has no binary operating point to override."
        )
    return threshold.model_copy(
        update={
            "value": override,
            "method": f"deployment override CXR_DECISION_THRESHOLD={override} (the card's validated "
            f"operating point is {threshold.value:.4f}, {threshold.method})",
            # Unknown at a threshold nobody validated: reporting the card's figures would mislead.
            "validation_sensitivity": None,
            "validation_specificity": None,
        }
    )
