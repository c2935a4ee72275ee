"""Training: mixtures, curriculum, batching, model building, DeepSpeed, the loop, the Ray Train driver."""
