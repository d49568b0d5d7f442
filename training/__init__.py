"""cxr-triage training toolkit: datasets split by patient, backbone fine-tuning, ONNX export.

Entry point: ``python -m training`` (see ``training.cli``). Decoding and preprocessing are not
implemented here: they come from ``service.contract``, the same code the service runs.
"""
