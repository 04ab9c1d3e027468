"""Install stylegan_ad: `pip install -e .` (add `[test]` for the test suite, `[gcs]` for gs:// run directories)."""
from setuptools import find_packages, setup

setup(
    name="stylegan_ad",
    version="0.1.0",
    description="Train a style-transfer GAN, detect its anomalous outputs, correct them.",
    packages=find_packages(include=["stylegan_ad", "stylegan_ad.*", "experiments", "experiments.*"]),
    python_requires=">=3.11",
    install_requires=[
        "jax>=0.7",
        "flax>=0.10",
        "optax>=0.2.4",
        "orbax-checkpoint>=0.11",
        "tensorflow-datasets>=4.9.7",
        "array_record>=0.7",          # TFDS file format, read without TensorFlow
        "importlib_resources",        # TFDS needs it when TensorFlow is absent
        "numpy>=1.26",
        "absl-py>=2.0",
        "ml_collections>=0.1.1",      # configs with --config.x=y overrides
        "scikit-image>=0.22",         # bundled content photos + paper textures
        "scikit-learn>=1.3",          # bundled photos (china, flower); AUROC cross-check in tests
        "pillow>=10",                 # image folders and the CLI
        "tensorboardX>=2.6",          # TensorBoard event files without TensorFlow
        "matplotlib>=3.8",            # the run report's plots (ROC/PRO curves, histograms, losses)
        "tqdm>=4.60",                 # progress bars (also a TFDS dependency)
        "av>=12",                     # video files (PyAV: its wheels ship FFmpeg, H.264/VP9/GIF)
        "opencv-python-headless>=4.8",  # optical flow between video frames (DIS), frame warps
    ],
    extras_require={
        # run directories on Google Cloud Storage (`--workdir=gs://bucket/run`): epath opens
        # them through gcsfs; Orbax writes checkpoints with TensorStore's own GCS driver
        "gcs": ["gcsfs>=2024.2", "google-cloud-storage>=2.14"],
        # selenium: the report pages in headless Chromium; gcp-storage-emulator: a local
        # GCS server for the gs:// workdir test (no network)
        "test": ["pytest>=8", "selenium>=4.20", "gcsfs>=2024.2", "gcp-storage-emulator>=2024.8"],
    },
    entry_points={"console_scripts": [
        "stylegan-ad-train=experiments.train_stylegan:run_main",
        "stylegan-ad-stylize=experiments.stylize:run_main",
        "stylegan-ad-video=experiments.stylize_video:run_main",
    ]},
)
