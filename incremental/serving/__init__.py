"""Serving the champion over HTTP, with reload on a new champion."""
