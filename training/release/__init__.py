"""Publishing a store version: the release gate and the ACTIVE pointer."""
