"""Running the model: the ONNX Runtime session, micro-batching, admission of requests, CPU count."""
