"""Task kinds: TaskSpec + examples -> per-example records (model work) -> Scores (metrics)."""
