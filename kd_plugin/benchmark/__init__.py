"""Cost and quality measurements (parameters, FLOPs, latency, memory, PSNR/SSIM)."""
