"""The model store on disk: which version is active, where it lives, and checks before loading it."""
