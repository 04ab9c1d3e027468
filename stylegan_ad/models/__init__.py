"""Flax Linen networks with pure `apply`: generator, discriminator, detector, restorer."""
