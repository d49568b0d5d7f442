"""From a run folder to a store version: ONNX export with in-graph Grad-CAM, quantisation."""
