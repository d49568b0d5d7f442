"""Changing what serves: hot reload, watching the store, draining on shutdown."""
