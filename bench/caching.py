"""Latent caching throughput of the engine against a bare batched VAE-encode loop, in the same run.

The bare loop is the least code that does the same job: decode and resize each image, stack a batch, encode it,
save each latent. The engine adds content hashing, cache keys, validity checks, atomic safetensors writes and
progress events, and overlaps image decoding with encoding.

usage: python bench/caching.py [--images 48] [--pixels 256] [--batch 4]
Prints one JSON line with both images/s figures and their ratio (target ≥ 0.9).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--pixels", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()

    import torch
    from diffusers import AutoencoderKL
    from PIL import Image

    from simpletuner.core.cli.demo_commands import make_demo_images
    from simpletuner.core.config.datasets import DatasetEntry
    from simpletuner.core.datasets.buckets import ResolutionSettings
    from simpletuner.core.datasets.cache_store import CacheStore
    from simpletuner.core.datasets.scan import scan_dataset
    from simpletuner.core.training.caching import LatentJob, encode_latents, latent_key
    from simpletuner.model_families.flux.tiny import TINY_SIZES
    from simpletuner.plugins.data_backends.local import LocalDataBackend

    torch.manual_seed(0)
    # wider than the test VAE so that encoding, not Python, is what a real cache spends its time on
    vae = AutoencoderKL(**{**TINY_SIZES["vae"], "block_out_channels": (32, 64, 64, 64), "norm_num_groups": 16})
    vae.eval().requires_grad_(False)

    def encode(pixels: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return vae.encode(pixels).latent_dist.mode()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = make_demo_images(root / "images", args.images)
        for path in paths:  # one bucket at the bench size
            Image.open(path).convert("RGB").resize((args.pixels, args.pixels)).save(path)
        encode(torch.zeros(1, 3, args.pixels, args.pixels))  # warm-up

        start = time.perf_counter()
        out = root / "bare"
        out.mkdir()
        for i in range(0, len(paths), args.batch):
            batch = []
            for path in paths[i : i + args.batch]:
                image = Image.open(path).convert("RGB").resize((args.pixels, args.pixels), Image.Resampling.LANCZOS)
                array = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
                batch.append(array.view(args.pixels, args.pixels, 3).permute(2, 0, 1).float() / 127.5 - 1)
            latents = encode(torch.stack(batch))
            for path, latent in zip(paths[i : i + args.batch], latents, strict=True):
                torch.save(latent.clone(), out / (path.stem + ".pt"))
        bare = len(paths) / (time.perf_counter() - start)

        start = time.perf_counter()
        backend = LocalDataBackend(root / "images")
        settings = ResolutionSettings(resolution=args.pixels, resolution_type="pixel",
                                      minimum_image_size=args.pixels, alignment=64)
        scanned = scan_dataset(DatasetEntry(id="bench", instance_data_dir=str(root / "images")), backend, settings)
        store = CacheStore(LocalDataBackend(root / "cache"))
        jobs = [LatentJob(s, scanned, store, latent_key(s, "bench-vae")) for s in scanned.samples]
        encode_latents(jobs, encode, args.batch)
        engine = len(paths) / (time.perf_counter() - start)
        assert all(store.is_valid(job.key) for job in jobs)
    print(json.dumps({"images": args.images, "pixels": args.pixels, "batch": args.batch,
                      "bare_images_per_s": round(bare, 2), "engine_images_per_s": round(engine, 2),
                      "ratio": round(engine / bare, 3)}))


if __name__ == "__main__":
    main()
