"""Flax Linen networks with pure `apply`: generator, discriminator, detector, restorer.

Importing the package registers every network by name (`stylegan_ad.registry`)."""
from stylegan_ad.models import detector, discriminator, generator, restorer  # noqa: F401
