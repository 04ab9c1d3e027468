"""Training: state and pure steps, checkpoints, logging, the loop."""
