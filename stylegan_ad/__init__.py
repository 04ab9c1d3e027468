"""stylegan_ad: train a style-transfer GAN, detect anomalous outputs, correct them."""
import os as _os

__version__ = "0.1.0"

# XLA:CPU (JAX 0.10) hands convolutions and matmuls to YNNPACK by default; its unpadded
# convolution runs 2-3x slower than XLA's own from batch 4 up (a ResNet-9 forward at
# 128x128: 420 vs 167 ms per image at batch 8; docs/performance.md). Opt out unless the
# user set the flag. It must be set before JAX starts its CPU backend, so import
# stylegan_ad before running any JAX computation.
_YNN = "--xla_cpu_experimental_ynn_fusion_type"
if _YNN not in _os.environ.get("XLA_FLAGS", ""):
  _os.environ["XLA_FLAGS"] = f"{_os.environ.get('XLA_FLAGS', '')} {_YNN}=".strip()
