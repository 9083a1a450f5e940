"""Model definitions: estimators, baselines, calibration, explanation and the saved bundle."""
