"""MLflow: set-up and tracking, the champion workflow (compare-and-set), lineage, the review report, UI links."""
