"""Classification metrics and calibration, shared by fitting and evaluation."""
