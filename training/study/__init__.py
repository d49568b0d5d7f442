"""Grids of runs over settings, their scoring and report."""
