"""Fill the @@NAME@@ placeholders of a file of this folder and print the result.

    python scripts/deploy/render.py nginx-videoconsult.conf \\
        --nodes 127.0.0.1:8081,127.0.0.1:8082 --set SERVER_NAME=video.example.org \\
        --set HTTP_PORT=80 --set HTTPS_PORT=443 \\
        --set TLS_CERT=/etc/letsencrypt/live/video.example.org/fullchain.pem \\
        --set TLS_KEY=/etc/letsencrypt/live/video.example.org/privkey.pem

``--nodes`` fills UPSTREAM_SERVERS (one ``server host:port;`` line per node). Every
placeholder must be given: an unfilled one stops with its name (exit 2).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLACEHOLDER = re.compile(r"@@([A-Z0-9_]+)@@")
NODE = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}$")


def render(text: str, values: dict[str, str]) -> str:
    missing = sorted(set(PLACEHOLDER.findall(text)) - set(values))
    if missing:
        raise ValueError("no value for " + ", ".join(missing))
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], text)


def upstream_lines(nodes: str) -> str:
    lines = []
    for node in (n.strip() for n in nodes.split(",")):
        if not NODE.match(node):
            raise ValueError(f"--nodes: expected host:port, got {node!r}")
        lines.append(f"    server {node} max_fails=2 fail_timeout=5s;")
    if not lines:
        raise ValueError("--nodes: give at least one host:port")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("template", help="a file of scripts/deploy (name or path)")
    parser.add_argument("--nodes", help="comma-separated host:port of the nodes")
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="a placeholder's value"
    )
    args = parser.parse_args(argv)
    path = Path(args.template)
    if not path.exists():
        path = HERE / args.template
    values: dict[str, str] = {}
    try:
        for pair in args.set:
            name, sep, value = pair.partition("=")
            if not sep or not name:
                raise ValueError(f"--set: expected NAME=VALUE, got {pair!r}")
            values[name] = value
        if args.nodes is not None:
            values["UPSTREAM_SERVERS"] = upstream_lines(args.nodes)
        sys.stdout.write(render(path.read_text(), values))
    except (ValueError, OSError) as exc:
        print(f"render: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
