"""Training: run configs, the training loop, its two engines, distributed data parallel."""
