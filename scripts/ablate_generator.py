"""The generator ablation: which change made G generalise to unseen photos.

  python scripts/ablate_generator.py --out=runs/ablation [--rows=default,old_default] [--style=cartoon]
  python scripts/ablate_generator.py --out=runs/ablation --rows=default,unpaired --style=ink_wash

Each row is the GAN stage of the main job (`experiments/configs/embedded.py`) with a few
config values changed, trained from scratch in OUT/<row>/ (a finished row is reused)
and evaluated against the true S(x) on the unseen test photos: 64 px crops and the
whole photos at their own resolution. Writes OUT/ablation.json and prints the
Markdown table that docs/generator_ablation.md quotes.
"""
from __future__ import annotations

import json
import os

from absl import app, flags

# the main job's G before batches of 4 (1.3.0 tables of docs/generator_ablation.md): the
# rows measured against it carry it, so each row still trains what its table shows
PREV = {"data.train_crop": 0, "data.batch_size": 8, "model.depth": 3, "train.num_steps": 1300,
        "losses.generator": {"adversarial": 1.0, "l1": 100.0, "l2": 1000.0}}
# CycleGAN mode (the config's "unpaired" argument) with two residual U-Nets like the paired G
UNPAIRED_UNET = {"model.generator": "residual_unet", "model.ngf": 32, "model.depth": 2, "data.symmetries": 8,
                 "train.num_steps": 1000, "train.lr": 1e-3, "train.decay_start": 0.5}
# the same on the shuffled split (every train photo on both sides), and with the ~16 px D
SHUFFLED = {**UNPAIRED_UNET, "data.unpaired_split": "shuffled"}
SHUFFLED_D1 = {**SHUFFLED, "model.d_layers": 1}
SHUFFLED_CONVNET = {**SHUFFLED, "model.discriminator": "convnet", "model.ndf": 32}
# self-supervised line drawing alone (`restyle_l2`) on line-free style images whose strokes are
# filled with a ramp (`losses.restyle_fill`), carrying photo texture up to 1 (`losses.restyle_texture`)
FILL_TERMS = {"losses.restyle_texture": 1.0, "losses.restyle_fill": 10, "losses.generator": {"restyle_l2": 1000.0}}
FILL = {**SHUFFLED, **FILL_TERMS}
ROWS = {
    "default": {},
    "steps2400": {"data.train_crop": 0, "train.num_steps": 2400},
    # the default before its 48 px training crops: 64 px crops (the test crops and photos are the same)
    "crop64": {"data.train_crop": 0},
    "steps3400": {"train.num_steps": 3400},
    # the default's learning rate, EMA and seed (how far a row moves by the seed alone)
    "lr1.5e-3": {"train.lr": 1.5e-3},
    "lr2e-3": {"train.lr": 2e-3},
    "ema0.999": {"train.ema_decay": 0.999},
    "seed1": {"seed": 1},
    "lr1.5e-3_seed1": {"train.lr": 1.5e-3, "seed": 1},
    "steps2400_no_ssim": {"data.train_crop": 0, "train.num_steps": 2400, "losses.generator": PREV["losses.generator"]},
    # the earliest default: pix2pix U-Net (instance norm, 5 levels), horizontal flips only
    "old_default": {**PREV, "model.generator": "unet", "model.ngf": 16, "model.depth": 5, "data.symmetries": 2,
                    "data.batch_size": 4, "train.num_steps": 3000, "train.lr": 2e-4, "train.decay_start": 0.7},
    "old_default_lr1e-3": {**PREV, "model.generator": "unet", "model.ngf": 16, "model.depth": 5, "data.symmetries": 2},
    "prev_default": PREV,
    "norm_free_flips_only": {**PREV, "data.symmetries": 2},
    "flips_lr2e-3": {**PREV, "data.symmetries": 2, "train.lr": 2e-3},
    "flips_decay0.3": {**PREV, "data.symmetries": 2, "train.decay_start": 0.3},
    "prev_lr2e-4": {**PREV, "train.lr": 2e-4},
    "prev_l1_only": {**PREV, "losses.generator": {"l1": 100.0}},
    "prev_ngf16": {**PREV, "model.ngf": 16},
    "b1_0.9": {**PREV, "train.b1": 0.9},
    "steps1700": {**PREV, "train.num_steps": 1700},
    "ngf24_steps1900": {**PREV, "model.ngf": 24, "train.num_steps": 1900},   # about PREV's G time
    "batch4_steps2400": {**PREV, "data.batch_size": 4, "train.num_steps": 2400},
    "depth2": {**PREV, "model.depth": 2},
    "unpaired": {},   # the config's "unpaired" argument: CycleGAN mode, no pairs seen
    # the same with the paired default's generator (two norm-free residual U-Nets)
    "unpaired_residual_unet": UNPAIRED_UNET,
    # the same, held to x at coarse scale (4x4 block means) instead of the cycle and identity terms
    "unpaired_lowpass": {**UNPAIRED_UNET, "losses.generator": {"adversarial": 1.0, "lowpass": 20.0}},
    "unpaired_lowpass2": {**UNPAIRED_UNET, "losses.generator": {"adversarial": 1.0, "lowpass": 2.0}},
    # D sees only high frequencies (blind to colour), G held to x over 16x16 block means
    "unpaired_highpass": {**UNPAIRED_UNET, "model.d_highpass": 7,
                          "losses.generator": {"adversarial": 1.0, "lowpass16": 20.0}},
    # CycleGAN (cycle + identity) with the colour-blind D
    "unpaired_cycle_highpass": {**UNPAIRED_UNET, "model.d_highpass": 7},
    # the coarse hold alone, D on whole images
    "unpaired_lowpass16": {**UNPAIRED_UNET, "losses.generator": {"adversarial": 1.0, "lowpass16": 20.0}},
    # a weaker coarse hold, between the one that keeps colours but draws no ink (20) and
    # the one that inks but washes colours out (2)
    "unpaired_lowpass16_w5": {**UNPAIRED_UNET, "losses.generator": {"adversarial": 1.0, "lowpass16": 5.0}},
    # the same plus CycleGAN's identity term (G(y) = y on style images: S is nearly idempotent),
    # without the cycle term, which asks G to keep what the ink covers
    "unpaired_idt_lowpass16_w5": {**UNPAIRED_UNET,
                                  "losses.generator": {"adversarial": 1.0, "identity": 5.0, "lowpass16": 5.0}},
    # the colour-blind D (no pull toward the style domain's colours) with the weaker hold
    "unpaired_highpass_w5": {**UNPAIRED_UNET, "model.d_highpass": 7,
                             "losses.generator": {"adversarial": 1.0, "lowpass16": 5.0}},
    # the coarse hold at 2700 steps, the paired default's length (more updates were what the paired G lacked)
    "unpaired_lowpass16_steps2700": {**UNPAIRED_UNET, "train.num_steps": 2700,
                                     "losses.generator": {"adversarial": 1.0, "lowpass16": 20.0}},
    # the coarse hold plus a Gram-matrix style term on D's features (Gatys-style texture
    # statistics of the style domain's images: ink-line texture, whatever its colours);
    # the term is about 2e-5 once D has trained, so these weights make it about as large
    # as the adversarial term (3e4) and ten times larger (3e5)
    "unpaired_gram3e4_lowpass16": {**UNPAIRED_UNET,
                                   "losses.generator": {"adversarial": 1.0, "lowpass16": 20.0, "gram_style": 3e4}},
    "unpaired_gram3e5_lowpass16": {**UNPAIRED_UNET,
                                   "losses.generator": {"adversarial": 1.0, "lowpass16": 20.0, "gram_style": 3e5}},
    # CartoonGAN's edge-promoting adversarial term: D_b also sees style images with their
    # edges blurred as fakes, so its verdict turns on sharp ink lines (the gap every row above leaves)
    "unpaired_edge_lowpass16": {**UNPAIRED_UNET, "losses.edge_promoting": True,
                                "losses.generator": {"adversarial": 1.0, "lowpass16": 20.0}},
    "unpaired_edge_lowpass16_w5": {**UNPAIRED_UNET, "losses.edge_promoting": True,
                                   "losses.generator": {"adversarial": 1.0, "lowpass16": 5.0}},
    # self-supervised line drawing from the style domain alone: G(line_free(y)) = y on style
    # images (`losses.restyle`), with the coarse hold on photos, without and with the adversarial term
    "unpaired_restyle100_lowpass16_noadv": {**UNPAIRED_UNET,
                                            "losses.generator": {"lowpass16": 20.0, "restyle": 100.0}},
    "unpaired_restyle100n10_lowpass16_noadv": {**UNPAIRED_UNET, "losses.restyle_noise": 0.1,
                                               "losses.generator": {"lowpass16": 20.0, "restyle": 100.0}},
    # the same as a squared error (the lines are a few percent of a style image's pixels)
    "unpaired_restyle_l2_1000_lowpass16_noadv": {**UNPAIRED_UNET, "losses.restyle_noise": 0.1,
                                                 "losses.generator": {"lowpass16": 20.0, "restyle_l2": 1000.0}},
    # the same, the line-free style images blurred first (soft gradients where the palette has steps)
    "unpaired_restyle_l2_1000_blur1_lowpass16_noadv": {**UNPAIRED_UNET, "losses.restyle_noise": 0.1,
                                                       "losses.restyle_blur": 1.0,
                                                       "losses.generator": {"lowpass16": 20.0, "restyle_l2": 1000.0}},
    "unpaired_restyle_l2_1000_blur1_lowpass16": {**UNPAIRED_UNET, "losses.restyle_noise": 0.1,
                                                 "losses.restyle_blur": 1.0,
                                                 "losses.generator": {"adversarial": 1.0, "lowpass16": 20.0,
                                                                      "restyle_l2": 1000.0}},
    "unpaired_restyle100_lowpass16": {**UNPAIRED_UNET,
                                      "losses.generator": {"adversarial": 1.0, "lowpass16": 20.0, "restyle": 100.0}},
    # a discriminator of small receptive field (1 or 2 stride-2 layers instead of 3: ~16 or
    # ~34 px), which sees an edge and its ink but not the subject of the photo around it
    "unpaired_d1_lowpass16": {**UNPAIRED_UNET, "model.d_layers": 1,
                              "losses.generator": {"adversarial": 1.0, "lowpass16": 20.0}},
    "unpaired_d2_lowpass16": {**UNPAIRED_UNET, "model.d_layers": 2,
                              "losses.generator": {"adversarial": 1.0, "lowpass16": 20.0}},
    # back-translation: each G learns from the pseudo-pairs the other makes (the cycle term
    # with the gradient into the second map only), with the coarse hold
    "unpaired_backtranslate10_lowpass16": {**UNPAIRED_UNET, "losses.generator": {"adversarial": 1.0, "lowpass16": 20.0,
                                                                              "backtranslate": 10.0}},
    "unpaired_backtranslate100_lowpass16": {**UNPAIRED_UNET, "losses.generator": {"adversarial": 1.0, "lowpass16": 20.0,
                                                                               "backtranslate": 100.0}},
    # no discriminator: G's 5x5 patches matched in distribution to the style images' (sliced
    # Wasserstein, `patch_swd`), held to x over 16x16 block means
    "unpaired_shuffled_swd100_lowpass16": {**SHUFFLED, "losses.generator": {"patch_swd": 100.0, "lowpass16": 20.0}},
    "unpaired_shuffled_swds100_lowpass16": {**SHUFFLED, "losses.generator": {"patch_swd_structure": 100.0,
                                                                            "lowpass16": 20.0}},
    "unpaired_shuffled_swds1000_lowpass16": {**SHUFFLED, "losses.generator": {"patch_swd_structure": 1000.0,
                                                                             "lowpass16": 20.0}},
    # every train photo on both sides, x and S(x) drawn apart (`data.unpaired_split=shuffled`,
    # CycleGAN's protocol for paired sets): D can no longer tell the domains by their subjects
    "unpaired_shuffled_lowpass16": {**SHUFFLED, "losses.generator": {"adversarial": 1.0, "lowpass16": 20.0}},
    "unpaired_shuffled_d1_lowpass16": {**SHUFFLED_D1, "losses.generator": {"adversarial": 1.0, "lowpass16": 20.0}},
    "unpaired_shuffled_lowpass16_w5": {**SHUFFLED, "losses.generator": {"adversarial": 1.0, "lowpass16": 5.0}},
    "unpaired_shuffled_lowpass": {**SHUFFLED, "losses.generator": {"adversarial": 1.0, "lowpass": 20.0}},
    "unpaired_shuffled_residual_unet": SHUFFLED,
    "unpaired_shuffled_idt_lowpass16_w5": {**SHUFFLED, "losses.generator": {"adversarial": 1.0, "identity": 5.0,
                                                                            "lowpass16": 5.0}},
    "unpaired_shuffled_backtranslate10_lowpass16": {**SHUFFLED, "losses.generator": {
        "adversarial": 1.0, "lowpass16": 20.0, "backtranslate": 10.0}},
    "unpaired_shuffled_lowpass16_steps2700": {**SHUFFLED, "train.num_steps": 2700,
                                              "losses.generator": {"adversarial": 1.0, "lowpass16": 20.0}},
    # the earlier unpaired signals again, on the shuffled split with the ~16 px D
    "unpaired_shuffled_d1_lowpass2": {**SHUFFLED_D1, "losses.generator": {"adversarial": 1.0, "lowpass": 2.0}},
    "unpaired_shuffled_d1_adv5_lowpass16": {**SHUFFLED_D1, "losses.generator": {"adversarial": 5.0, "lowpass16": 20.0}},
    "unpaired_shuffled_d1_hinge_lowpass16": {**SHUFFLED_D1, "losses.adversarial": "hinge",
                                             "losses.generator": {"adversarial": 1.0, "lowpass16": 20.0}},
    "unpaired_shuffled_d1_edge_lowpass16": {**SHUFFLED_D1, "losses.edge_promoting": True,
                                            "losses.generator": {"adversarial": 1.0, "lowpass16": 20.0}},
    "unpaired_shuffled_d1_restyle100_lowpass16": {**SHUFFLED_D1, "losses.generator": {
        "adversarial": 1.0, "lowpass16": 20.0, "restyle": 100.0}},
    "unpaired_shuffled_d1_highpass_lowpass16": {**SHUFFLED_D1, "model.d_highpass": 7,
                                                "losses.generator": {"adversarial": 1.0, "lowpass16": 20.0}},
    "unpaired_shuffled_d1_gram3e4_lowpass16": {**SHUFFLED_D1, "losses.generator": {
        "adversarial": 1.0, "lowpass16": 20.0, "gram_style": 3e4}},
    "unpaired_shuffled_d1_lr3e-4_lowpass16": {**SHUFFLED_D1, "train.lr": 3e-4,
                                              "losses.generator": {"adversarial": 1.0, "lowpass16": 20.0}},
    # a stronger D that still sees only ~16 px: four times as wide
    "unpaired_shuffled_d1_ndf64_lowpass16": {**SHUFFLED_D1, "model.ndf": 64,
                                             "losses.generator": {"adversarial": 1.0, "lowpass16": 20.0}},
    # ... or one that learns four times as fast as G (the two time-scale rule)
    "unpaired_shuffled_d1_dlr4_lowpass16": {**SHUFFLED_D1, "train.d_lr_scale": 4.0,
                                            "losses.generator": {"adversarial": 1.0, "lowpass16": 20.0}},
    # a D that has learnt photo from style before G's first step: 3000 D-only steps (`train.d_warmup`;
    # alone, a D of width 32 needs thousands of steps to tell them apart), then the GAN's 1000
    "unpaired_shuffled_d1_ndf32_warmup3000_lowpass16": {**SHUFFLED_D1, "model.ndf": 32, "train.d_warmup": 3000,
                                                        "train.num_steps": 4000,
                                                        "losses.generator": {"adversarial": 1.0, "lowpass16": 20.0}},
    # the same with the adversarial term at 0.3, with the 4x4 hold, and with the default D width
    "unpaired_shuffled_d1_ndf32_warmup3000_adv0.3_lowpass16": {
        **SHUFFLED_D1, "model.ndf": 32, "train.d_warmup": 3000, "train.num_steps": 4000,
        "losses.generator": {"adversarial": 0.3, "lowpass16": 20.0}},
    "unpaired_shuffled_d1_ndf32_warmup3000_lowpass": {
        **SHUFFLED_D1, "model.ndf": 32, "train.d_warmup": 3000, "train.num_steps": 4000,
        "losses.generator": {"adversarial": 1.0, "lowpass": 20.0}},
    "unpaired_shuffled_d2_ndf32_warmup3000_lowpass16": {   # a ~34 px judge: sees where the ink sits
        **SHUFFLED, "model.d_layers": 2, "model.ndf": 32, "train.d_warmup": 3000, "train.num_steps": 4000,
        "losses.generator": {"adversarial": 1.0, "lowpass16": 20.0}},
    # x's strong edges held (`edge_hold`): G can no longer meet D by smoothing them away, so
    # at a strong edge it must look like the style's (an ink line keeps the edge)
    "unpaired_shuffled_d1_edgehold20_lowpass16": {**SHUFFLED_D1, "losses.generator": {
        "adversarial": 1.0, "lowpass16": 20.0, "edge_hold": 20.0}},
    "unpaired_shuffled_d1_warmup3000_lowpass16": {**SHUFFLED_D1, "train.d_warmup": 3000, "train.num_steps": 4000,
                                                  "losses.generator": {"adversarial": 1.0, "lowpass16": 20.0}},
    # the plain 3x3 conv D without normalization (models/discriminator.py ConvNet, width 32, ~31 px)
    "unpaired_shuffled_convnet_lowpass16": {**SHUFFLED_CONVNET, "losses.generator": {"adversarial": 1.0, "lowpass16": 20.0}},
    # DiffAugment on every image D sees (losses.diff_augment)
    "unpaired_shuffled_convnet_diffaug_lowpass16": {**SHUFFLED_CONVNET, "losses.diff_augment": "translation,cutout",
                                                    "losses.generator": {"adversarial": 1.0, "lowpass16": 20.0}},
    "unpaired_shuffled_d1_diffaug_lowpass16": {**SHUFFLED_D1, "losses.diff_augment": "translation,cutout",
                                               "losses.generator": {"adversarial": 1.0, "lowpass16": 20.0}},
    "unpaired_shuffled_convnet_diffaug_color_lowpass16": {
        **SHUFFLED_CONVNET, "losses.diff_augment": "translation,cutout,color",
        "losses.generator": {"adversarial": 1.0, "lowpass16": 20.0}},
    # a G of little capacity (width 8, one pooling: ~20 px): D's gradient reaches G only
    # through a few parameters shared by every pixel, so it cannot write a texture of its own
    "unpaired_shuffled_convnet_g8_depth1_lowpass16": {
        **SHUFFLED_CONVNET, "model.ngf": 8, "model.depth": 1,
        "losses.generator": {"adversarial": 1.0, "lowpass16": 20.0}},
    "unpaired_shuffled_d1_g8_depth1_lowpass16": {
        **SHUFFLED_D1, "model.ngf": 8, "model.depth": 1,
        "losses.generator": {"adversarial": 1.0, "lowpass16": 20.0}},
    # the same small G for 8x the steps (it takes 1/5 of a step of the two-pooling G)
    "unpaired_shuffled_convnet_diffaug_g8_depth1_steps8000_lowpass16": {
        **SHUFFLED_CONVNET, "model.ngf": 8, "model.depth": 1, "train.num_steps": 8000,
        "losses.diff_augment": "translation,cutout", "losses.generator": {"adversarial": 1.0, "lowpass16": 20.0}},
    # and with the patch distribution's term that flattens (`patch_swd_structure`) beside the adversarial one that inks
    "unpaired_shuffled_convnet_diffaug_g8_depth1_swds100_steps8000_lowpass16": {
        **SHUFFLED_CONVNET, "model.ngf": 8, "model.depth": 1, "train.num_steps": 8000,
        "losses.diff_augment": "translation,cutout",
        "losses.generator": {"adversarial": 1.0, "patch_swd_structure": 100.0, "lowpass16": 20.0}},
    # self-supervised line drawing (`restyle_l2`: G(line_free(y)) -> y) on inputs that carry a
    # photo's texture (`losses.restyle_texture`: the batch's photos minus their 2 px blur, each
    # scaled by up to 2), so that G learns to draw lines on edges and to leave texture out;
    # no adversarial term, alone and with the coarse hold on the photos
    "unpaired_shuffled_restyle_l2_1000_texture2_noadv": {
        **SHUFFLED, "losses.restyle_texture": 2.0, "losses.generator": {"restyle_l2": 1000.0}},
    "unpaired_shuffled_restyle_l2_1000_texture2_steps2700_noadv": {
        **SHUFFLED, "losses.restyle_texture": 2.0, "train.num_steps": 2700,
        "losses.generator": {"restyle_l2": 1000.0}},
    # the same on the default split (the style domain's three photos, none of them a train photo)
    "unpaired_restyle_l2_1000_texture2_noadv": {
        **UNPAIRED_UNET, "losses.restyle_texture": 2.0, "losses.generator": {"restyle_l2": 1000.0}},
    "unpaired_shuffled_restyle_l2_1000_texture2_lowpass16_noadv": {
        **SHUFFLED, "losses.restyle_texture": 2.0, "losses.generator": {"restyle_l2": 1000.0, "lowpass16": 20.0}},
    "unpaired_shuffled_d1_restyle_l2_1000_texture2_lowpass16": {
        **SHUFFLED_D1, "losses.restyle_texture": 2.0,
        "losses.generator": {"adversarial": 1.0, "restyle_l2": 1000.0, "lowpass16": 20.0}},
    # the same with the strokes filled by a ramp centred where the line was (`losses.restyle_fill`:
    # 10 rounds of 3x3 means from the unlined pixels), as a photo's soft edge sits under the line
    "unpaired_shuffled_restyle_l2_1000_fill10_texture2_noadv": {**FILL, "losses.restyle_texture": 2.0},
    "unpaired_shuffled_restyle_l2_1000_fill10_texture1_noadv": FILL,
    "unpaired_shuffled_restyle_l2_1000_fill10_texture1_steps2000_noadv": {**FILL, "train.num_steps": 2000},
    "unpaired_shuffled_restyle_l2_1000_fill10_texture1_lowpass16_noadv": {
        **FILL, "losses.generator": {"restyle_l2": 1000.0, "lowpass16": 20.0}},
    "unpaired_shuffled_d1_restyle_l2_1000_fill10_texture1_lowpass16": {
        **FILL, "model.d_layers": 1, "losses.generator": {"adversarial": 1.0, "restyle_l2": 1000.0, "lowpass16": 20.0}},
    "unpaired_shuffled_restyle_l2_1000_fill10_texture1_steps600_noadv": {**FILL, "train.num_steps": 600},
    "unpaired_shuffled_restyle_l2_1000_fill10_texture1_steps600_seed1_noadv": {
        **FILL, "train.num_steps": 600, "seed": 1},
    "unpaired_shuffled_restyle_l2_1000_fill10_texture0.5_steps600_noadv": {
        **FILL, "losses.restyle_texture": 0.5, "train.num_steps": 600},
    "unpaired_shuffled_restyle_l2_1000_fill10_texture1_steps400_noadv": {**FILL, "train.num_steps": 400},
    "unpaired_shuffled_restyle_l2_1000_fill10_texture1_steps250_noadv": {**FILL, "train.num_steps": 250},
    "unpaired_shuffled_restyle_l2_1000_fill10_texture1_steps600_batch8_noadv": {
        **FILL, "train.num_steps": 600, "data.batch_size": 8},
    # the 600-step row on the default split
    "unpaired_restyle_l2_1000_fill10_texture1_steps600_noadv": {
        **UNPAIRED_UNET, **FILL_TERMS, "train.num_steps": 600},
    # G sees a photo through a fixed Gaussian (`model.input_blur`): its fine texture, which the
    # line-free style images lack, does not reach G (the style images reach it unblurred)
    "unpaired_shuffled_restyle_l2_1000_fill10_texture1_steps600_blur1_noadv": {
        **FILL, "train.num_steps": 600, "model.input_blur": 1.0},
    "unpaired_shuffled_restyle_l2_1000_fill10_texture0_steps600_blur1_noadv": {
        **FILL, "train.num_steps": 600, "model.input_blur": 1.0, "losses.restyle_texture": 0.0},
    "unpaired_shuffled_restyle_l2_1000_fill10_texture0_steps600_blur1_seed1_noadv": {
        **FILL, "train.num_steps": 600, "model.input_blur": 1.0, "losses.restyle_texture": 0.0, "seed": 1},
    "unpaired_shuffled_restyle_l2_1000_fill10_texture0_steps600_blur0.75_noadv": {
        **FILL, "train.num_steps": 600, "model.input_blur": 0.75, "losses.restyle_texture": 0.0},
    "unpaired_shuffled_restyle_l2_1000_fill10_texture0_steps600_blur0.5_noadv": {
        **FILL, "train.num_steps": 600, "model.input_blur": 0.5, "losses.restyle_texture": 0.0},
    "unpaired_shuffled_restyle_l2_1000_fill10_texture0_steps600_blur1.5_noadv": {
        **FILL, "train.num_steps": 600, "model.input_blur": 1.5, "losses.restyle_texture": 0.0},
    "unpaired_shuffled_restyle_l2_1000_fill10_texture0_blur1_noadv": {
        **FILL, "model.input_blur": 1.0, "losses.restyle_texture": 0.0},
    "unpaired_shuffled_restyle_l2_1000_fill10_texture0_blur1_seed1_noadv": {
        **FILL, "model.input_blur": 1.0, "losses.restyle_texture": 0.0, "seed": 1},
    "unpaired_shuffled_restyle_l2_1000_fill10_texture0_steps1500_blur1_noadv": {
        **FILL, "train.num_steps": 1500, "model.input_blur": 1.0, "losses.restyle_texture": 0.0},
    "unpaired_shuffled_restyle_l2_1000_fill10_texture0_steps2000_blur1_noadv": {
        **FILL, "train.num_steps": 2000, "model.input_blur": 1.0, "losses.restyle_texture": 0.0},
    # `embedded.py:unpaired_lines`: the texture0_blur1 row (1000 steps) as a config of its own
    "unpaired_lines": {},
}
CONFIG_ARGS = {row: "unpaired_lines" if row == "unpaired_lines" else "unpaired" for row in ROWS if row.startswith("unpaired")}

_OUT = flags.DEFINE_string("out", "runs/ablation", "folder for the rows' runs and ablation.json")
_ROWS = flags.DEFINE_list("rows", list(ROWS), f"rows to run, of {list(ROWS)}")
_STYLE = flags.DEFINE_string("style", "cartoon", "embedded style")


def _config(row: str, style: str):
  from experiments.configs import embedded
  arg = CONFIG_ARGS.get(row)
  c = embedded.get_config(arg)
  c.data.source = f"embedded:{style}"
  for key, value in ROWS[row].items():
    if "." in key:
      group, name = key.split(".")
      c[group][name] = value
    else:
      c[key] = value
  return c


def main(argv):
  del argv
  from stylegan_ad.train import loop
  os.makedirs(_OUT.value, exist_ok=True)
  results = {}
  path = os.path.join(_OUT.value, "ablation.json")
  if os.path.exists(path):
    results = json.load(open(path))
  for row in _ROWS.value:
    key = f"{_STYLE.value}/{row}"
    if key in results:
      continue
    workdir = os.path.join(_OUT.value, _STYLE.value, row)
    run = loop.train(_config(row, _STYLE.value), workdir)
    if run.preempted:  # stopped (a signal): not a result; rerunning the row continues it
      break
    # the loop's own training clock (compile included), so a reused run reports its training time
    last = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))][-1]
    seconds = last["step"] / last["steps_per_sec"]
    ev = loop.evaluate(run)
    keys = ("psnr", "ssim", "identity_psnr", "identity_ssim", "channel_mean_error", "identity_channel_mean_error")
    change = {"config arg": CONFIG_ARGS[row]} if row in CONFIG_ARGS else ROWS[row]
    results[key] = {"change": change, "gan_stage_seconds": seconds, "crops": {k: ev[k] for k in keys},
                    "photos": {k: ev["photos"][k] for k in keys}}
    with open(path, "w") as f:
      json.dump(results, f, indent=2)
  print("| style | row | change | crops PSNR / SSIM | whole photos PSNR / SSIM | identity, whole photos | "
        "colour drift (whole photos, R/G/B) | GAN stage (s) |")
  print("|---|---|---|---|---|---|---|---|")
  for key, r in results.items():
    style, row = key.split("/")
    change = ", ".join(f"`{k}={v}`" for k, v in r["change"].items()) or "(the main job's config)"
    c, p = r["crops"], r["photos"]
    drift = " / ".join(f"{e:+.3f}" for e in p["channel_mean_error"])
    print(f"| {style} | {row} | {change} | {c['psnr']:.2f} / {c['ssim']:.3f} | {p['psnr']:.2f} / {p['ssim']:.3f} "
          f"| {p['identity_psnr']:.2f} / {p['identity_ssim']:.3f} | {drift} | {r['gan_stage_seconds']:.0f} |")


if __name__ == "__main__":
  app.run(main)
