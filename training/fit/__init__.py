"""Training a model: the engine, the trainer, strategies, distributed runs and the run folder."""
