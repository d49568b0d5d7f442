"""Operational endpoints for orchestrators and scrapers: liveness, readiness, Prometheus metrics."""

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from service.api.dependencies import ContextDep, MetricsDep
from service.api.schemas import ErrorResponse, Health, ModelRef, ProviderFallback, Readiness

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers HTTP")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": ErrorResponse, "description": "No model loaded, or draining after SIGTERM"}},
    summary="Readiness: a validated model is loaded and can take predictions",
)
async def readyz(context: ContextDep) -> Readiness | JSONResponse:
    runtime = context.runtime
    if context.draining:
        # Requests are still served; this only tells the load balancer to send new work elsewhere.
        return JSONResponse(
            {
                "code": "draining",
                "detail": "Shutting down: requests are still served for now; send new work elsewhere.",
            },
            status_code=503,
        )
    if runtime is None:
        return JSONResponse({"code": "not_ready", "detail": "The model is not loaded."}, status_code=503)
    return Readiness(
        status="ready",
        model=ModelRef(name=runtime.card.name, version=runtime.card.version),
        execution_provider=runtime.provider,
        provider_fallback=ProviderFallback.from_reason(runtime.provider_fallback),
    )


# HEAD on the probes: load balancers and uptime checkers use it (it was 405). Same status, no body;
# left out of the OpenAPI schema, where each would duplicate its GET operation.
@router.head("/healthz", include_in_schema=False)
async def healthz_head() -> Response:
    return Response(status_code=200)


@router.head("/readyz", include_in_schema=False)
async def readyz_head(context: ContextDep) -> Response:
    answer = await readyz(context)
    return Response(status_code=answer.status_code if isinstance(answer, JSONResponse) else 200)


@router.get("/metrics", response_class=Response, summary="Prometheus metrics (text exposition format)")
async def metrics(metrics: MetricsDep) -> Response:
    body, content_type = metrics.render()
    return Response(content=body, media_type=content_type)
