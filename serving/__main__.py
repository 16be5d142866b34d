"""``python -m serving [--host H] [--port P] [--workers N]``: what the local stack starts."""

from __future__ import annotations

import argparse

from serving.server import run


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m serving", description="Serve every model of the specs folder.")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--workers", type=int)
    args = parser.parse_args()
    run(host=args.host, port=args.port, workers=args.workers)


if __name__ == "__main__":
    main()
