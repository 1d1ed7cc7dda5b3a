"""Keep a transformer search ranker fresh: hourly extract -> validate -> update -> gate -> register."""

__version__ = "0.1.0"
