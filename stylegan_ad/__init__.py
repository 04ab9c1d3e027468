"""stylegan_ad: train a style-transfer GAN, detect anomalous outputs, correct them."""

__version__ = "0.1.0"
