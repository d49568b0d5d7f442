"""Why a model directory cannot be served."""


class ModelLoadError(RuntimeError):
    """The configured model cannot be served; the message says which check failed and why."""


class ModelNotFoundError(ModelLoadError):
    """The requested model directory or version does not exist in the store."""
