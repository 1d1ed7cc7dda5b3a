"""Validation of an extracted hour: the Great Expectations suite, row rules, hour-over-hour drift, the report."""
