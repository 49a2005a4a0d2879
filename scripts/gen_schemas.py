#!/usr/bin/env python3
"""Write schemas/ from the wire types (`--check`: exit 1 and list the files that differ)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sidecar.wire.schema import documents, render

ROOT = Path(__file__).resolve().parent.parent / "schemas"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--out", type=Path, default=ROOT)
    args = parser.parse_args()
    wanted = {path: render(doc) for path, doc in documents().items()}
    existing = (
        {str(p.relative_to(args.out)): p for p in args.out.rglob("*.json")} if args.out.exists() else {}
    )
    stale = sorted(set(existing) - set(wanted))
    differ = sorted(p for p, data in wanted.items() if p not in existing or existing[p].read_bytes() != data)
    if args.check:
        for path in differ + stale:
            print(f"schemas/{path} is out of date; run scripts/gen_schemas.py", file=sys.stderr)
        return 1 if differ or stale else 0
    for path in stale:
        existing[path].unlink()
    for path, data in wanted.items():
        target = args.out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    print(f"wrote {len(wanted)} schema files to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
