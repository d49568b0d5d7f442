"""HTTP routers, one module per resource; ``create_app`` includes ``ALL_ROUTERS``."""

from service.api.routes.admin import router as admin_router
from service.api.routes.dicomweb import router as dicomweb_router
from service.api.routes.health import router as health_router
from service.api.routes.models import router as models_router
from service.api.routes.predict import router as predict_router
from service.api.routes.studies import router as studies_router
from service.api.routes.ui import router as ui_router

ALL_ROUTERS = (predict_router, models_router, admin_router, health_router, ui_router)
# Only where the PACS gateway is configured (CXR_PACS_SPOOL_DIR): STOW-RS intake and the worklist.
PACS_ROUTERS = (dicomweb_router, studies_router)

__all__ = ["ALL_ROUTERS", "PACS_ROUTERS"]
