"""What model is being served: the card's identity, contract, operating point and metrics."""

from fastapi import APIRouter

from service.api.dependencies import RuntimeDep
from service.api.schemas import ErrorResponse, ModelInfo, ProviderFallback

router = APIRouter(prefix="/v1", tags=["models"])


@router.get(
    "/models",
    response_model=ModelInfo,
    responses={503: {"model": ErrorResponse, "description": "No model loaded"}},
    summary="The loaded model",
)
async def loaded_model(runtime: RuntimeDep) -> ModelInfo:
    card = runtime.card
    return ModelInfo(
        name=card.name,
        version=card.version,
        architecture=card.architecture,
        created_at=card.created_at,
        class_names=list(card.class_names),
        pixel_contract=card.pixel_contract,
        training_data=card.training_data,
        decision_threshold=runtime.threshold,
        calibration=card.calibration,
        out_of_distribution=card.ood,
        validation_metrics=dict(card.validation_metrics),
        majority_baseline=dict(card.majority_baseline),
        intended_population=card.intended_population,
        shift_benchmark=card.shift_benchmark,
        onnx_sha256=runtime.sha256,
        execution_provider=runtime.provider,
        provider_fallback=ProviderFallback.from_reason(runtime.provider_fallback),
    )
