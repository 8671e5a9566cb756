"""Per-module table of a finished `mutmut run` (the mutants/ folder it leaves behind).

  python benchmarks/mutation_table.py            # markdown table, one row per mutated module
  python benchmarks/mutation_table.py --diffs    # plus the diff of every surviving mutant

Reads mutmut's per-file result files (mutants/<path>.meta, JSON: mutant name -> exit code) with
mutmut's own status names, so the numbers are the ones `mutmut results` lists. The score is
killed / mutants: a mutant that no selected test reaches counts against it, like a survivor.
Mutants a run did not select (`mutmut run "probing.extract.x_cache_key*"` runs one function's;
mutmut calls the rest 'not checked') are left out of the row and counted in a note below it,
and a module none of whose mutants ran has no row.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code


def module_counts(root: Path) -> dict[str, Counter]:
    """{'readouts/metrics.py': Counter(status -> count)} for every .meta under root/mutants."""
    counts = {}
    for meta in sorted((root / "mutants").rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        module = str(meta.relative_to(root / "mutants"))[: -len(".meta")]
        counts[module] = Counter(status_by_exit_code[code] for code in codes.values())
    return counts


def survivors(root: Path) -> dict[str, list[str]]:
    """{module: [mutant names that were not killed]}."""
    out = {}
    for meta in sorted((root / "mutants").rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        module = str(meta.relative_to(root / "mutants"))[: -len(".meta")]
        out[module] = sorted(name for name, code in codes.items()
                             if status_by_exit_code[code] not in ("killed", "caught by type check",
                                                                  "not checked"))
    return out


def table(counts: dict[str, Counter]) -> str:
    rows = ["| module | mutants | killed | survived | no test reaches | timeout | killed % |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    total, skipped = Counter(), {}
    for module, c in counts.items():
        c = Counter({status: k for status, k in c.items() if status != "not checked"})
        n = sum(c.values())
        if counts[module]["not checked"]:
            skipped[module] = counts[module]["not checked"]
        if not n:
            continue
        total.update(c)
        rows.append(f"| `{module}` | {n} | {c['killed']} | {c['survived']} | {c['no tests']} | "
                    f"{c['timeout']} | {100 * c['killed'] / n:.1f} |")
    n = sum(total.values())
    rows.append(f"| **all** | {n} | {total['killed']} | {total['survived']} | "
                f"{total['no tests']} | {total['timeout']} | {100 * total['killed'] / n:.1f} |")
    notes = [f"\n`{module}`: {k} mutants outside this run's selection (not checked)"
             for module, k in skipped.items() if sum(counts[module].values()) > k]
    return "\n".join(rows + notes)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("--diffs", action="store_true", help="print each survivor's diff")
    args = parser.parse_args(argv)
    counts = module_counts(args.root)
    if not counts:
        print("no mutants/ results found; run `make mutation` first", file=sys.stderr)
        return 1
    print(table(counts))
    if args.diffs:
        for module, names in survivors(args.root).items():
            for name in names:
                shown = subprocess.run(["mutmut", "show", name], cwd=args.root,
                                       capture_output=True, text=True).stdout
                print(f"\n### {name}\n{shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
