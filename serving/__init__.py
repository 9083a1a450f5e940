"""The BentoML scoring service for registry systems and the officials' risk-list page."""
