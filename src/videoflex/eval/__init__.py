"""Evaluation: I3D (Kinetics-400) features, FVD, PSNR/SSIM and a linear class probe."""
