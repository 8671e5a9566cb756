"""`walt-probe list [tasks|backbones|sizes|experiments|macros]`: what can be bound, without reading
the tree.

  tasks        the gin files under tasks/ (first header line each) and the task names gin knows
  backbones    the gin files under backbones/ and the registered backbone builders
  sizes        the named WALT and tokenizer sizes (walt/sizes.py) with width, depth, heads
  experiments  the runnable gin files under experiments/
  macros       the CAPS macros each gin file defines (REQUIRED ones marked)

Gin files are searched on --gin_search_paths (default: the shipped gin/ folder). No argument
lists every section.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

USES_GIN = False
SECTIONS = ("tasks", "backbones", "sizes", "experiments", "macros")
_MACRO = re.compile(r"^([A-Z][A-Z0-9_]*)\s*=\s*(.*)$")


def add_arguments(parser) -> None:
    parser.add_argument("what", nargs="?", choices=SECTIONS, default=None,
                        help="one section (default: all)")


def header(path: Path) -> str:
    """The first comment line of a gin file, without the '#'."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line.strip():
            break
    return "(no header)"


def gin_files(search_paths, folder: str) -> list[tuple[str, Path]]:
    """(name relative to its search path, path) of every .gin file under `folder`."""
    out = {}
    for root in search_paths:
        base = Path(root) / folder
        if base.is_dir():
            for path in sorted(base.rglob("*.gin")):
                out.setdefault(str(path.relative_to(root)), path)
    return sorted(out.items())


def _files(search_paths, folder: str) -> list[str]:
    rows = gin_files(search_paths, folder)
    width = max((len(n) for n, _ in rows), default=0)
    return [f"  {name:<{width}}  {header(path)}" for name, path in rows]


def tasks_section(search_paths) -> list[str]:
    from runners import configurables
    return (["tasks (gin files: include one, it binds TASK):", *_files(search_paths, "tasks"),
             "task builders (TASK = @Name()):",
             "  synthetic: " + ", ".join(configurables.SYNTHETIC_NAMES.values()),
             "  real:      " + ", ".join(configurables.REAL_NAMES)])


def backbones_section(search_paths) -> list[str]:
    from runners import configurables
    return (["backbones (gin files: include one; Probe.backbone = @Backbone()):",
             *_files(search_paths, "backbones"),
             "backbone builders: " + ", ".join(configurables.BACKBONES)])


def sizes_section() -> list[str]:
    from walt.sizes import TOKENIZER_SIZES, WALT_NOMINAL, WALT_SIZES
    lines = ["WALT sizes (BACKBONE_SIZE = '<name>'; walt/sizes.py):"]
    for name, row in WALT_SIZES.items():
        nominal = WALT_NOMINAL.get(name)
        lines.append(f"  {name:<6} d={row['width']:<5} L={row['depth']:<3} heads={row['num_heads']:<3}"
                     + (f" ~{nominal / 1e6:,.0f}M parameters" if nominal else ""))
    lines.append("tokenizer sizes (TOKENIZER = '<name>'):")
    for name, row in TOKENIZER_SIZES.items():
        lines.append(f"  {name:<6} base_channels={row['base_channels']} "
                     f"res_blocks={row['num_res_blocks']} latent_channels={row['latent_channels']}")
    return lines


def experiments_section(search_paths) -> list[str]:
    return ["experiments (walt-probe probe|sweep|pretrain --gin_file=<name>):",
            *_files(search_paths, "experiments")]


def macros_section(search_paths) -> list[str]:
    lines = ["macros (set with --gin.NAME=value; strings quoted: --gin.VARIANT=\"'image'\"):"]
    for folder in ("backbones", "tokenizers", "tasks", "experiments"):
        for name, path in gin_files(search_paths, folder):
            found = []
            for line in path.read_text().splitlines():
                m = _MACRO.match(line.split("#", 1)[0].strip())
                if m:
                    found.append(m.group(1) + (" (REQUIRED)" if "gin.REQUIRED" in m.group(2) else ""))
            if found:
                lines.append(f"  {name}: " + ", ".join(dict.fromkeys(found)))
    return lines


def render(what: str | None, search_paths) -> str:
    sections = {"tasks": lambda: tasks_section(search_paths),
                "backbones": lambda: backbones_section(search_paths),
                "sizes": sizes_section,
                "experiments": lambda: experiments_section(search_paths),
                "macros": lambda: macros_section(search_paths)}
    chosen = [what] if what else list(SECTIONS)
    return "\n\n".join("\n".join(sections[s]()) for s in chosen) + "\n"


def main(args, gin_args) -> int:
    sys.stdout.write(render(args.what, gin_args.search_paths))
    return 0
