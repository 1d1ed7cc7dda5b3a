"""Data in: the warehouse, extraction of an hour, and the lake (parts, manifests, storage, lock, quarantine)."""
