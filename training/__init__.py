"""Training, tuning, evaluation as targeting, comparison and promotion of models (MLflow)."""
