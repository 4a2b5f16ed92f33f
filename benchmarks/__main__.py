"""Run every benchmark in turn: ``python -m benchmarks`` (or ``make bench``).

Each writes ``benchmarks/results/<name>.json``; all report ratios to the raw client.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

import benchmarks


def main() -> int:
    names = ["baseline"] + sorted(
        m.name for m in pkgutil.iter_modules([str(Path(benchmarks.__file__).parent)]) if m.name.startswith("bench_"))
    only = set(sys.argv[1:])
    failed = []
    for name in names:
        if only and name not in only:
            continue
        print(f"\n=== {name}")
        module = importlib.import_module(f"benchmarks.{name}")
        saved = sys.argv
        sys.argv = [name]
        try:
            module.main()
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            print(f"benchmark {name} failed: {exc!r}")
            failed.append(name)
        finally:
            sys.argv = saved
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
