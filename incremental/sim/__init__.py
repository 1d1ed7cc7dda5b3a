"""Test and demo data, not the pipeline: the traffic simulator, its catalogue, fault injection, judgment import."""
