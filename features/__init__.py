"""Household data in, training sets out: sources (synthetic registry panel, IDB survey,
registry exports), the canonical schema and its validation, the indicator catalogue,
the fitted featurizers, the task labels and the training-set builder."""
