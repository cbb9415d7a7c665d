"""`chalklm explain`: a local page that shows every number of your own model."""

from __future__ import annotations

import argparse

from chalklm.cli.common import non_negative_int


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "explain", help="a local web page that shows every number of your model",
        description="Serve a page on 127.0.0.1 that runs your checkpoint on a prompt you "
                    "type and shows every intermediate: tokens, embeddings, each layer's "
                    "layer norm, attention heads and MLP, the next token's chances, the "
                    "loss curves. Its JSON API is documented in docs/explain-api.md.",
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--checkpoint", metavar="DIR",
                      help="a GPT or translation checkpoint folder, or a run folder "
                           "(its best/)")
    what.add_argument("--demo", choices=["leaf-flower"],
                      help="the article's first network alone, no checkpoint needed")
    parser.add_argument("--port", type=_port, default=0,
                        help="the port to listen on (default: a free one)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="the address to listen on (default 127.0.0.1, this machine "
                             "only; another one lets other machines in, with a warning)")
    parser.add_argument("--open", action="store_true", help="open the page in a browser")
    parser.set_defaults(func=run)


def _port(text: str) -> int:
    value = non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {value}")
    return value


def run(args) -> int:
    from chalklm.explain.app import make_app
    from chalklm.explain.serve import LOCAL_HOSTS, serve

    explainer = None
    if args.checkpoint is not None:
        from chalklm.explain.session import open_checkpoint

        explainer = open_checkpoint(args.checkpoint)
    serve(make_app(explainer, local_only=args.host in LOCAL_HOSTS), args.host, args.port,
          args.open)
    return 0
