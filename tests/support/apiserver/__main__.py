"""Run the emulated API server as a process until SIGINT/SIGTERM.

    python -m tests.support.apiserver --port 0 --kubeconfig-out /tmp/kubeconfig [--tls] [--rbac] [--apply crd.yaml]
        [--feature-gates SidecarContainers=false]

Prints one line, `ready <url>`, once it serves.
"""
from __future__ import annotations

import argparse
import asyncio
import pathlib
import signal

from .server import ApiServer


async def serve(args: argparse.Namespace) -> None:
    async with ApiServer(port=args.port or None, rbac=args.rbac, tls=args.tls, feature_gates=args.feature_gates) as api:
        for path in args.apply:
            api.apply(pathlib.Path(path).read_text())
        api.write_kubeconfig(args.kubeconfig_out)
        print(f'ready {api.url}', flush=True)
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await stop.wait()


def feature_gates(text: str) -> dict[str, bool]:
    """kube-apiserver's --feature-gates syntax: `A=true,B=false`."""
    gates = {}
    for item in filter(None, text.split(',')):
        name, _, value = item.partition('=')
        if value.lower() not in ('true', 'false'):
            raise argparse.ArgumentTypeError(f'{item!r}: expected NAME=true|false')
        gates[name.strip()] = value.lower() == 'true'
    return gates


def main() -> None:
    parser = argparse.ArgumentParser(prog='python -m tests.support.apiserver', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--port', type=int, default=0, help='port on 127.0.0.1 (0: a free one)')
    parser.add_argument('--kubeconfig-out', required=True, help='where to write the admin kubeconfig')
    parser.add_argument('--tls', action='store_true', help='serve HTTPS; kubectl sends tokens only over TLS')
    parser.add_argument('--rbac', action='store_true', help='enforce RBAC for all but the admin token')
    parser.add_argument('--apply', action='append', default=[], help='YAML manifests to create at start')
    parser.add_argument('--feature-gates', type=feature_gates, default={},
                        help='e.g. SidecarContainers=false (as 1.28 defaults it)')
    asyncio.run(serve(parser.parse_args()))


if __name__ == '__main__':
    main()
