"""Which version directory to load: a pinned ``CXR_MODEL_DIR``, a named version, ``latest`` or ``active``."""

from pathlib import Path

from service.contract.model_card import CARD_FILENAME
from service.settings import ACTIVE, LATEST, Settings
from service.store.active_version import NoPointerError, PointerError, pointer_path, read_active
from service.store.errors import ModelLoadError, ModelNotFoundError


def resolve_model_dir(settings: Settings, version: str | None = None) -> Path:
    """The version directory to load: ``model_dir`` if set, else ``model_store/name/version``.

    ``version`` (a hot reload's choice) replaces ``settings.model_version``; it is meaningless when
    ``model_dir`` pins one directory, so asking for both is refused rather than half-honoured.
    """
    if settings.model_dir is not None:
        if version is not None:
            raise ModelLoadError(
                f"CXR_MODEL_DIR pins the model to {settings.model_dir}; a version cannot be chosen. "
                "Reload without a version, or configure CXR_MODEL_STORE/CXR_MODEL_NAME instead."
            )
        return settings.model_dir
    name_dir = settings.model_store / settings.model_name
    wanted = settings.model_version if version is None else version
    if wanted == ACTIVE:
        return _active_dir(name_dir)
    if wanted != LATEST:
        return name_dir / wanted
    if not name_dir.is_dir():
        raise ModelNotFoundError(
            f"Model store directory {name_dir} does not exist (CXR_MODEL_STORE={settings.model_store}, "
            f"CXR_MODEL_NAME={settings.model_name})."
        )
    # Plain string sort, as documented: use sortable version names (timestamps, v001...). Hidden
    # folders are exports still being staged, never a version.
    versions = sorted(
        p.name for p in name_dir.iterdir() if not p.name.startswith(".") and (p / CARD_FILENAME).is_file()
    )
    if not versions:
        raise ModelNotFoundError(f"No version directory containing {CARD_FILENAME} under {name_dir}.")
    return name_dir / versions[-1]


def _active_dir(name_dir: Path) -> Path:
    """The version the store's ACTIVE pointer names, read now (it moves when a version is published)."""
    try:
        version = read_active(name_dir)
    except NoPointerError as exc:
        raise ModelNotFoundError(f"CXR_MODEL_VERSION=active, but {exc}.") from None
    except PointerError as exc:
        raise ModelLoadError(f"CXR_MODEL_VERSION=active, but {exc}.") from None
    model_dir = name_dir / version
    if not model_dir.is_dir():
        raise ModelNotFoundError(
            f"CXR_MODEL_VERSION=active: {pointer_path(name_dir)} names version {version!r}, but "
            f"{model_dir} does not exist. Activate an existing version (python -m training activate)."
        )
    return model_dir
