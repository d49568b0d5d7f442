"""cxr-triage inference service.

Importing this package is cheap and torch-free: the FastAPI app is built by ``service.main.create_app``
and the preprocessing contract shared with training lives in ``service.contract``.
"""

__version__ = "0.1.0"
