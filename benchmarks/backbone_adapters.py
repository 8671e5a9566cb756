"""Video DiT adapters against the library models they wrap (random weights, published shapes).

For a CogVideoX-2B-shaped and a Wan2.1-T2V-1.3B-shaped transformer (configs below, with their
source), on the same clean latents of one published-size clip:

  direct      the library transformer's own full forward on the noised latents, a forward hook
              capturing the last block (what public probing code does)
  adapter L   backbone.features_from_latents(z0, t, [L], seeds): noise with the model's scheduler
              and fixed per-example seeds, run the same forward stopped after block L, restore the
              grid (b, t', h', w', D) float32                       target: adapter / direct <= 1.05
              (and once with seeds=None: fresh noise drawn on the device, to show what the
              host-side fixed-seed noise costs)
  adapter L/3 the same at block L // 3                              target: <= 0.4 x direct

Each row: median of --iters timed runs after --warmup calls (CUDA events on a GPU), clips/s,
FLOPs counted by torch.utils.flop_counter on that very call (matmuls + attention), and MFU =
FLOPs / time / the dense matmul peak measured here (bf16 8192^3 on a GPU; float32 on a CPU).
--vae adds the VAE encode of the clip (default-config AutoencoderKLCogVideoX / AutoencoderKLWan,
which are the published VAEs' shapes) on its own line.

GPU (the numbers for benchmarks/README.md):
  PYTHONPATH=$PWD python benchmarks/backbone_adapters.py --vae \
      --out benchmarks/results/backbone_adapters.md
CPU check of the script itself (tiny shapes, seconds):
  PYTHONPATH=$PWD python benchmarks/backbone_adapters.py --tiny
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from datetime import datetime, timezone

import torch
from torch.utils.flop_counter import FlopCounterMode

from backbones.cogvideox import CogVideoX
from backbones.video_dit import run_blocks
from backbones.wan import Wan

# THUDM/CogVideoX-2b transformer/config.json (= the diffusers class defaults): 30 blocks of width
# 30 x 64 = 1920, sinusoidal 3-D positions, T5-XXL text (226 tokens of 4096).
COGVIDEOX_2B = dict(num_attention_heads=30, attention_head_dim=64, in_channels=16, out_channels=16,
                    time_embed_dim=512, text_embed_dim=4096, num_layers=30, sample_width=90,
                    sample_height=60, sample_frames=49, patch_size=2, temporal_compression_ratio=4,
                    max_text_seq_length=226, use_rotary_positional_embeddings=False)
# THUDM/CogVideoX-2b scheduler/scheduler_config.json
COGVIDEOX_2B_SCHEDULER = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                              clip_sample=False, prediction_type="v_prediction",
                              rescale_betas_zero_snr=True, set_alpha_to_one=True,
                              snr_shift_scale=3.0, timestep_spacing="trailing")
# Wan-AI/Wan2.1-T2V-1.3B-Diffusers transformer/config.json: 30 blocks of width 12 x 128 = 1536,
# FFN 8960, patch (1, 2, 2), UMT5-XXL text (512 tokens of 4096).
WAN_1P3B = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128,
                in_channels=16, out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960,
                num_layers=30, cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6,
                rope_max_seq_len=1024)
# Wan-AI/Wan2.1-T2V-1.3B-Diffusers scheduler/scheduler_config.json (480p flow shift)
WAN_SCHEDULER = dict(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)

# (model, published clip (T, H, W), text tokens); --tiny shrinks widths, depth and clips
PUBLISHED = {"CogVideoX-2B": ((49, 480, 720), 226), "Wan2.1-1.3B": ((81, 480, 832), 512)}
TINY = {"CogVideoX-2B": ((9, 64, 64), 16), "Wan2.1-1.3B": ((9, 64, 64), 16)}


def timed_ms(fn, iters: int, warmup: int, cuda: bool) -> float:
    """Median wall time of fn() in ms after `warmup` calls (CUDA events on a GPU)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def matmul_peak_tflops(device, dtype, n: int, iters: int = 10) -> float:
    """Measured dense matmul rate (the MFU denominator)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    ms = timed_ms(lambda: a @ b, iters, 3, device.type == "cuda")
    return 2 * n**3 / (ms * 1e-3) / 1e12


def counted_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def keep_fp32_modules(model):
    """Return the parameters the class lists in `_keep_in_fp32_modules` to float32, as
    `from_pretrained(torch_dtype=...)` leaves them (Wan's norms, rope, time embedder)."""
    keep = getattr(model, "_keep_in_fp32_modules", None) or []
    for name, param in model.named_parameters():
        if any(k in name.split(".") for k in keep):
            param.data = param.data.float()
    return model


def build(model: str, tiny: bool, device, dtype, with_vae: bool):
    """The adapter around a random transformer of the published config (tiny: narrow, 6 deep).

    The VAE is the published one (the class defaults) with --vae, else a tiny stand-in that the
    transformer timings never call."""
    from diffusers import (AutoencoderKLCogVideoX, AutoencoderKLWan, CogVideoXDDIMScheduler,
                           CogVideoXTransformer3DModel, UniPCMultistepScheduler,
                           WanTransformer3DModel)
    torch.manual_seed(0)
    (frames, height, width), text_len = (TINY if tiny else PUBLISHED)[model]
    shrink = dict(num_layers=6, num_attention_heads=2, attention_head_dim=32) if tiny else {}
    small_vae = tiny or not with_vae
    # built on the host, then moved (~10 s for 1.7B parameters): the classes compute some
    # buffers (positions, rope tables) on the CPU explicitly, so a device context could mix devices
    if model == "CogVideoX-2B":
        cfg = dict(COGVIDEOX_2B, **shrink)
        if tiny:
            cfg.update(time_embed_dim=32, text_embed_dim=64, max_text_seq_length=text_len)
        transformer = CogVideoXTransformer3DModel(**cfg)
        vae = AutoencoderKLCogVideoX(**(dict(block_out_channels=(8,) * 4, norm_num_groups=2)
                                        if small_vae else {}))
        vae_dtype, text_dim = dtype, cfg["text_embed_dim"]
        cls, sched, extra = CogVideoX, CogVideoXDDIMScheduler(**COGVIDEOX_2B_SCHEDULER), {}
    else:
        cfg = dict(WAN_1P3B, **shrink)
        if tiny:
            cfg.update(ffn_dim=128, text_dim=64, freq_dim=32)
        transformer = WanTransformer3DModel(**cfg)
        vae = AutoencoderKLWan(**(dict(base_dim=8) if small_vae else {}))
        # float32, as build_wan loads it
        vae_dtype, text_dim = torch.float32, cfg["text_dim"]
        cls, sched = Wan, UniPCMultistepScheduler(**WAN_SCHEDULER)
        extra = {"expand_timesteps": False}
    transformer = keep_fp32_modules(transformer.to(device, dtype))
    vae = keep_fp32_modules(vae.to(device, vae_dtype))
    # a random stand-in for the null text: the shape of T5 / UMT5 on "" (speed does not depend
    # on its values)
    text = {"prompt_embeds": torch.randn(1, text_len, text_dim, device=device, dtype=dtype)}
    backbone = cls(transformer, vae, sched, text, device, dtype, family=model.lower(),
                   name=f"{model}-shape", size=model.split("-")[1].lower(),
                   preprocessing={}, weights="random", **extra)
    return backbone, (frames, height, width)


def bench(model: str, args, device, dtype, peak: float) -> list[dict]:
    backbone, (frames, height, width) = build(model, args.tiny, device, dtype, args.vae)
    cuda = device.type == "cuda"
    b, L, t = args.batch, backbone.num_blocks, 500
    ft, fs = 4, 8   # both VAEs: 4x in time (first frame alone), 8x in space
    z0 = torch.randn(b, backbone.transformer.config.in_channels, (frames - 1) // ft + 1,
                     height // fs, width // fs, device=device)
    seeds = torch.arange(b)
    # the direct call gets exactly the inputs the adapter builds (noised latents, null text,
    # timestep, positions), and a hook on the last block as public probing code places one
    zt, tb = backbone.noised(z0, t, seeds)
    call = backbone.transformer_call(zt.to(dtype), tb.to(device))
    grab = {}
    backbone.blocks[L - 1].register_forward_hook(
        lambda m, a, out: grab.__setitem__("last", out[0] if isinstance(out, tuple) else out))

    def direct():
        with torch.no_grad():
            return call()

    def adapter(k, fixed=True):
        return lambda: backbone.features_from_latents(z0, t, [k], seeds if fixed else None)

    # fixed-seed noise (what probing uses) is drawn on the host, one generator per example, so
    # features do not depend on the device; the fresh-noise row shows what that costs
    paths = [("direct (library forward, all blocks)", L, "", direct),
             (f"adapter, block {L} (of {L})", L, "<= 1.05", adapter(L)),
             (f"adapter, block {L} (of {L}), fresh noise on the device", L, "<= 1.05",
              adapter(L, fixed=False)),
             (f"adapter, block {L // 3} (of {L})", L // 3, "<= 0.40", adapter(L // 3))]
    rows = []
    for label, k, target, fn in paths:
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        flops = counted_flops(fn)   # also the first warm-up call
        rows.append(dict(model=model, path=label, blocks=k, flops=flops, target=target,
                         mem_gib=torch.cuda.max_memory_allocated() / 2**30 if cuda else None))
    # interleaved rounds, so drift of clocks or of a shared machine hits every path alike
    times = [[] for _ in paths]
    for _ in range(args.warmup):
        for _, _, _, fn in paths:
            fn()
    for _ in range(args.iters):
        for i, (_, _, _, fn) in enumerate(paths):
            times[i].append(timed_ms(fn, 1, 0, cuda))
    for row, ts in zip(rows, times):
        ms = statistics.median(ts)
        row.update(ms=ms, ratio=ms / statistics.median(times[0]))
    if args.vae:
        video = torch.randint(0, 256, (b, frames, height, width, 3), dtype=torch.uint8)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        label = f"VAE encode ({type(backbone.vae).__name__})"
        try:
            ms = timed_ms(lambda: backbone.latents(video), max(2, args.iters // 3), 1, cuda)
        except torch.OutOfMemoryError:   # keep the transformer rows; say what failed
            ms, label = float("nan"), label + ": out of memory"
            torch.cuda.empty_cache()
        rows.append(dict(model=model, path=label, blocks=0, ms=ms, flops=None, ratio=None,
                         target="",
                         mem_gib=torch.cuda.max_memory_allocated() / 2**30 if cuda else None))
    for row in rows:
        row.update(batch=b, clip=f"{frames} x {height} x {width}", clips_s=b / row["ms"] * 1e3,
                   mfu=(row["flops"] / (row["ms"] * 1e-3) / (peak * 1e12)
                        if row["flops"] is not None else None))
    del backbone
    if cuda:
        torch.cuda.empty_cache()
    return rows


def table(rows: list[dict], peak: float, device, dtype, args) -> str:
    dev_name = (torch.cuda.get_device_name() if device.type == "cuda"
                else platform.processor() or "cpu")
    shapes = "tiny, CPU check" if args.tiny else "published shapes"
    lines = [f"# Video DiT adapters vs the library models ({shapes})",
             "",
             f"{dev_name}, torch {torch.__version__}, {dtype}, batch {args.batch}, median of "
             f"{args.iters} runs after {args.warmup} warm-up, "
             f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. Matmul peak measured: "
             f"{peak:.3g} TFLOP/s. Random weights.",
             "",
             "| model | clip | path | ms/batch | clips/s | GFLOP/batch | MFU | / direct | target "
             "| peak mem GiB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        def fmt(v, spec):
            return "" if v is None else format(v, spec)
        lines.append(f"| {r['model']} | {r['clip']} | {r['path']} | {r['ms']:.1f} | "
                     f"{r['clips_s']:.2f} | {fmt(r['flops'] and r['flops'] / 1e9, ',.4g')} | "
                     f"{'' if r['mfu'] is None else format(100 * r['mfu'], '.1f') + ' %'} | "
                     f"{fmt(r['ratio'], '.3f')} | {r['target']} | {fmt(r['mem_gib'], '.1f')} |")
    command = "PYTHONPATH=$PWD python benchmarks/backbone_adapters.py " + " ".join(args.argv)
    lines += ["", "    " + command]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny shapes on the CPU (script check)")
    parser.add_argument("--models", nargs="+", default=list(PUBLISHED), choices=list(PUBLISHED))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--vae", action="store_true", help="also time the VAE encode")
    parser.add_argument("--out", help="write the markdown table here too")
    args = parser.parse_args(argv)
    args.argv = argv if argv is not None else __import__("sys").argv[1:]
    if args.tiny:
        device, dtype = torch.device("cpu"), torch.float32
        torch.set_num_threads(1)   # tiny matmuls: extra threads on a shared CPU only add noise
        args.iters, args.warmup = min(args.iters, 3), min(args.warmup, 1)
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no GPU: run with --tiny to check the script on a CPU")
        device, dtype = torch.device("cuda"), torch.bfloat16
    peak = matmul_peak_tflops(device, dtype, n=512 if args.tiny else 8192)
    rows = [row for model in args.models for row in bench(model, args, device, dtype, peak)]
    text = table(rows, peak, device, dtype, args)
    print(text)
    if args.out:
        from pathlib import Path
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(out)   # atomic


if __name__ == "__main__":
    main()
