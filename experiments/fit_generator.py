"""Fit a detector and restorer for a generator trained with the PyTorch CycleGAN code,
on your own photos, into a run directory that `experiments.stylize --workdir` then uses.

  python -m experiments.fit_generator --config=experiments/configs/imported.py \
      --generator=torch:latest_net_G_A.pth --photos=DIR --workdir=RUN
  python -m experiments.stylize --workdir=RUN --input=PHOTOS --output=OUT

The photos are never written; a share of them (detect.calibration_fraction) is held out
of the fit to calibrate the threshold (`stylegan_ad.imported`).
"""
from absl import flags

from experiments import common

flags.adopt_module_key_flags(common)  # --help lists --config and --workdir
GENERATOR = flags.DEFINE_string("generator", None, "torch:PATH.pth, a generator file of the PyTorch CycleGAN "
                                "reference (resnet_9blocks / resnet_6blocks, any width)")
PHOTOS = flags.DEFINE_string("photos", None, "folder of photos to fit on (at least 2; any size)")
flags.mark_flags_as_required(["generator", "photos"])


def _fit(config, workdir):
  from stylegan_ad import imported
  return imported.fit(config, workdir, GENERATOR.value, PHOTOS.value)


def _show(summary):
  det = summary["synthetic_held_out"]["detector"]
  print(f"{summary['generator']} ({summary['architecture']}): detector and restorer fitted on "
        f"{len(summary['photos']['fit'])} photos; threshold {summary['threshold']:.3f}, set on "
        f"{len(summary['photos']['held_out'])} held out (crops, and whole at 1x and 0.5x); on their outputs with "
        f"synthetic artifacts: image AUROC {det['image_auroc']:.3f}, pixel AUROC {det['pixel_auroc']:.3f} "
        f"({summary['seconds']:.0f} s)")


if __name__ == "__main__":
  common.run(_fit, _show)
