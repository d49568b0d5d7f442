"""Developer and CI scripts (run as files; importable so their logic can be tested)."""
