"""Judging a candidate: metrics, paired intervals, the anchor set, scoring, the gate, the lexical floor, drift."""
