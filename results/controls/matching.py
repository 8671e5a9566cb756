"""The matching tracking readout (readouts/matching.py) on the oracle and the pixel floor, scored
on val AND test against the trivial predictor (results/controls/README.md, "Matching readout").

  PYTHONPATH=$PWD python results/controls/matching.py --analog point_tracks --backbone oracle \
      --num_train 256 --steps 2000 --seed 0 --out results/controls/matching.jsonl

Features are computed once per (analog, backbone, time grid, sizes, split) into --feature_dir
(the oracle re-renders each clip: ~1 s per clip at 32 x 32 x 9 on one busy core), then the head
trains as tests/backbones/test_controls.fit_and_score does (batch 8, AdamW at a constant lr,
weight decay 1e-4), one CPU thread. Appends one JSON line: train-clip fit, val, test, trivial
on val and test, head parameters, wall time of the training.

  python results/controls/matching.py --table results/controls/matching.jsonl   # -> tables_matching.md
"""

import argparse
import json
import pathlib
import time

import torch

from backbones.oracle import OracleBackbone
from backbones.pixels import PixelsBackbone
from tasks import baselines
from tasks.synthetic import builders
from tests.backbones.test_controls import _features

REPO = pathlib.Path(__file__).resolve().parents[2]
# The study's settings (gin/tasks/synthetic/point_tracks_movi_e.gin, box_tracks_waymo.gin).
HEAD = {"readout": "matching", "key_dim": 32, "hidden": 64, "window": 0, "locality": 0.2}
METRICS = ("average_jaccard", "occlusion_accuracy", "average_pts_within_thresh", "mean_iou")


def cached_features(task, backbone, split: str, path: pathlib.Path, block: int = 0, t: int = 0):
    """[(features, batch without video)] of a split at (block, t), computed once into path."""
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        with torch.no_grad():
            torch.save(_features(task, backbone, split, block=block, t=t), tmp)
        tmp.replace(path)                                     # atomic: no half-written cache
    return torch.load(path, weights_only=False)


def score(task, head, data) -> dict:
    head.eval()
    acc = task.new_accumulator()
    with torch.no_grad():
        for feats, batch in data:
            acc.update(head(*task.head_inputs(feats, batch)), batch)
    head.train()
    result = acc.result()
    return {k: round(float(result[k]), 4) for k in METRICS if k in result}


def write_table(jsonl: pathlib.Path) -> pathlib.Path:
    """tables_matching.md next to the JSON lines: one row per run, val and test."""
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    lines = ["# Matching readout controls (results/controls/matching.py; README.md 'Matching readout')",
             "", f"Generated from {jsonl.name}. AJ = average_jaccard, OA = occlusion_accuracy, "
             "<d> = average_pts_within_thresh; box tracks: mIoU (frame 0 excluded).", "",
             "| task | backbone | head | time grid | raster | train clips | steps | seed | trivial val / test "
             "| val | test | train-clip fit | head params | train s |", "|---|" * 1 + "---|" * 13]
    for r in rows:
        fmt = lambda m: ", ".join(f"{k.replace('average_jaccard', 'AJ').replace('occlusion_accuracy', 'OA').replace('average_pts_within_thresh', '<d>').replace('mean_iou', 'mIoU')} {v:.3f}" for k, v in m.items())  # noqa: E731,E501
        variant = ", ".join(f"{k}={v}" for k, v in r["head"].items() if HEAD.get(k) != v) or "study"
        lines.append(f"| {r['analog']} | {r['backbone']} | {variant} | {r['time_grid']} | {r['image_size']} x "
                     f"{r['num_frames']} | {r['num_train']} | {r['steps']} | {r['seed']} | "
                     f"{r['trivial_val']:.3f} / {r['trivial_test']:.3f} | {fmt(r['val'])} | "
                     f"{fmt(r['test'])} | {fmt(r['train_fit'])} | {r['head_params']:,} | "
                     f"{r['train_wall_s']:.0f} |")
    out = jsonl.with_name("tables_matching.md")
    tmp = out.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(out)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", default=None, help="write tables_matching.md from this JSONL and exit")
    ap.add_argument("--analog", choices=("point_tracks", "box_tracks"), default="point_tracks")
    ap.add_argument("--backbone", choices=("oracle", "pixels", "walt-image", "walt-video"), default="oracle",
                    help="walt-*: the shipped `small` I-WALT / V-WALT (checkpoints/), at --block and --t")
    ap.add_argument("--block", type=int, default=5, help="walt-*: the block read (mini-study cell: 5 of 8)")
    ap.add_argument("--t", type=int, default=0, help="walt-*: the noise timestep")
    ap.add_argument("--time_grid", choices=("latent", "frames"), default="latent",
                    help="the oracle's time grid (pixels: always the latent grid)")
    ap.add_argument("--head", default="{}", help="JSON overrides of HEAD")
    ap.add_argument("--image_size", type=int, default=32)
    ap.add_argument("--num_frames", type=int, default=9)
    ap.add_argument("--num_train", type=int, default=256)
    ap.add_argument("--num_val", type=int, default=16, help="val and test clips each")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--feature_dir", default="/tmp/walt_probe_matching")
    ap.add_argument("--out", default="results/controls/matching.jsonl")
    args = ap.parse_args()
    if args.table:
        print(write_table(pathlib.Path(args.table)))
        return
    torch.set_num_threads(1)

    head_kwargs = {**HEAD, **json.loads(args.head)}
    task_kwargs = {"visibility_rule": "visibility"} if args.analog == "point_tracks" else {}
    sizes = dict(image_size=args.image_size, num_frames=args.num_frames, num_train=args.num_train,
                 num_val=args.num_val, num_test=args.num_val)
    task = builders.BUILDERS[args.analog](cache_dir=str(pathlib.Path(args.feature_dir) / "data"),
                                          head_kwargs=head_kwargs, task_kwargs=task_kwargs, **sizes)
    block, t = 0, 0
    if args.backbone == "oracle":
        backbone = OracleBackbone(args.analog, image_size=args.image_size, num_frames=args.num_frames,
                                  time_grid=args.time_grid)
    elif args.backbone == "pixels":
        backbone = PixelsBackbone("rgb")
    else:
        from backbones.build import build_backbone
        variant = args.backbone.split("-")[1]
        ckpt = REPO / "checkpoints"
        backbone = build_backbone(variant=variant, tokenizer="small", image_size=args.image_size,
                                  num_frames=args.num_frames,
                                  tokenizer_checkpoint=str(ckpt / "tokenizer_small.safetensors"),
                                  walt_checkpoint=str(ckpt / f"{variant[0]}walt_small.safetensors"))
        block, t = args.block, args.t
    grid = args.time_grid if args.backbone == "oracle" else "latent"
    stem = (f"{args.analog}_{args.backbone}_{grid}_{args.image_size}x{args.num_frames}_"
            f"{args.num_train}_{args.num_val}" + (f"_b{block}_t{t}" if args.backbone.startswith("walt") else ""))
    pathlib.Path(args.feature_dir).mkdir(parents=True, exist_ok=True)
    data = {split: cached_features(task, backbone, split,
                                   pathlib.Path(args.feature_dir) / f"{stem}_{split}.pt", block, t)
            for split in ("train", "val", "test")}

    torch.manual_seed(args.seed)
    head = task.make_head(backbone.feature_dim)
    opt = torch.optim.AdamW(head.parameters(), lr=args.lr, weight_decay=1e-4)
    start = time.time()
    for step in range(args.steps):
        feats, batch = data["train"][step % len(data["train"])]
        loss = task.loss(head(*task.head_inputs(feats, batch)), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    wall = time.time() - start
    row = {"analog": args.analog, "backbone": args.backbone + (f" b{block} t{t}" if args.backbone.startswith("walt") else ""),
           "time_grid": grid,
           "head": head_kwargs, **sizes, "steps": args.steps, "lr": args.lr, "seed": args.seed,
           "train_wall_s": round(wall, 1), "head_params": sum(p.numel() for p in head.parameters()),
           "trivial_val": round(baselines.trivial_metrics(task, 8, split="val")["value"], 4),
           "trivial_test": round(baselines.trivial_metrics(task, 8, split="test")["value"], 4),
           "train_fit": score(task, head, data["train"][:2]),   # 16 train clips
           "val": score(task, head, data["val"]), "test": score(task, head, data["test"])}
    print(json.dumps(row))
    with open(args.out, "a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
