"""`walt-probe visualize`: look at the models and what they make.

  --what sizes    parameter table of every named WALT size (I-WALT and V-WALT, counted on the
                  meta device, so instant) and of every tokenizer size.

Each view is one function `show_<what>(args) -> int` listed in VIEWS; adding a view adds one
function and one entry (argparse takes its choices from VIEWS).
"""

from __future__ import annotations

import sys

USES_GIN = False  # the sizes table needs no configuration; views that do parse gin themselves


def show_sizes(args) -> int:
    """Prints the named-size tables with the counts tests/walt/test_sizes.py checks."""
    from walt.sizes import (TOKENIZER_SIZES, WALT_NOMINAL, WALT_SIZES, count_tokenizer_parameters,
                            count_walt_parameters)

    out = sys.stdout
    out.write("WALT transformer (parameters counted on the meta device, default latent grid)\n")
    header = (f"{'size':<6} {'width':>5} {'depth':>5} {'heads':>5} {'latent t,h,w':>12} "
              f"{'STW window':>10} {'V-WALT':>14} {'I-WALT':>14} {'vs name':>8}\n")
    out.write(header)
    out.write("-" * (len(header) - 1) + "\n")
    for name, kw in WALT_SIZES.items():
        video = count_walt_parameters(name, "video")
        image = count_walt_parameters(name, "image")
        nominal = WALT_NOMINAL.get(name)
        rel = f"{100 * (video / nominal - 1):+.1f}%" if nominal else "-"
        grid = ",".join(str(v) for v in kw["latent_shape"])
        window = "x".join(str(v) for v in kw["stw_window"])
        out.write(f"{name:<6} {kw['width']:>5} {kw['depth']:>5} {kw['num_heads']:>5} {grid:>12} "
                  f"{window:>10} {video:>14,} {image:>14,} {rel:>8}\n")
    out.write("\nTokenizer (causal 3-D CNN; 17 x H x W -> 5 x H/8 x W/8 x 8)\n")
    header = (f"{'size':<6} {'base ch':>7} {'mults':>9} {'blocks':>6} {'encoder':>14} "
              f"{'decoder':>14} {'total':>14}\n")
    out.write(header)
    out.write("-" * (len(header) - 1) + "\n")
    for name, kw in TOKENIZER_SIZES.items():
        n = count_tokenizer_parameters(name)
        mults = ",".join(str(m) for m in kw["channel_mult"])
        out.write(f"{name:<6} {kw['base_channels']:>7} {mults:>9} {kw['num_res_blocks']:>6} "
                  f"{n['encoder']:>14,} {n['decoder']:>14,} {n['total']:>14,}\n")
    return 0


VIEWS = {"sizes": show_sizes}


def add_arguments(parser) -> None:
    parser.add_argument("--what", choices=sorted(VIEWS), default="sizes",
                        help="what to show (default: %(default)s)")


def main(args, gin_args) -> int:
    return VIEWS[args.what](args)
