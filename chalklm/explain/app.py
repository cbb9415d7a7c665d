"""The explain server's routes (Starlette): the page's files and the JSON API under /api/.

`make_app(explainer)` serves one checkpoint (an `Explainer`, fixed at start) or, with
None, only the leaf/flower network (`chalklm explain --demo leaf-flower`). Each route
reads its fields through requests.py, runs the model in a worker thread (the event loop
stays free for other browsers) and answers JSON; docs/explain-api.md documents them.
"""

from __future__ import annotations

import json
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from chalklm import generation
from chalklm.errors import ChalkError
from chalklm.explain import leaf, requests
from chalklm.explain.encode import ENCODINGS, encode
from chalklm.explain.metrics import read_metrics
from chalklm.explain.requests import MAX_BODY, MAX_NEW_TOKENS, BadRequest
from chalklm.explain.translation import MAX_BEAM

STATIC = Path(__file__).parent / "static"
# A server on this machine only answers requests addressed to this machine: a web page
# elsewhere cannot reach it through a name that resolves here (DNS rebinding).
LOCAL_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"]


async def body_of(request: Request) -> dict:
    """The JSON object of a POST, read at most 64 KB far (a bigger one is a 413)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise BadRequest(f"the request body is {declared} bytes; the limit is {MAX_BODY}", 413)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise BadRequest(f"the request body is over {MAX_BODY} bytes", 413)
    return requests.parse_body(body)


def controls(data: dict) -> generation.Controls:
    greedy = requests.flag(data, "greedy")
    temperature = 0.0 if greedy else requests.temperature(data)
    return generation.Controls(temperature, requests.whole(data, "top_k", None, 1, 10**6),
                               requests.top_p(data))


def make_app(explainer=None, local_only: bool = False) -> Starlette:
    """The ASGI app for an `Explainer` (GPT), a `TranslationExplainer`, or None: the
    leaf/flower network alone. `local_only`: refuse requests for any other host name."""

    def model(kind: str = "gpt"):
        if explainer is None:
            raise BadRequest("this server shows the leaf/flower network only; start it "
                             "with --checkpoint DIR to see a language model", 404)
        if explainer.kind != kind:
            route = "/api/translate" if explainer.kind == "transformer" else "/api/forward"
            raise BadRequest(f"this server shows a {explainer.kind} checkpoint; ask "
                             f"{route}", 404)
        return explainer

    def prompt_and_engine(data):
        return (requests.text(data, "prompt"),
                requests.choice(data, "engine", requests.ENGINES, "torch"))

    async def info(request):
        if explainer is None:
            return JSONResponse({"kind": "demo", "demo": "leaf-flower"})
        return JSONResponse(await run_in_threadpool(explainer.info))

    async def tokens(request):
        data = await body_of(request)
        return JSONResponse(await run_in_threadpool(model().tokens,
                                                    requests.text(data, "prompt")))

    async def forward(request):
        data = await body_of(request)
        prompt, engine = prompt_and_engine(data)
        encoding = requests.choice(data, "encoding", ENCODINGS, "float16")
        m = model()

        def run():  # JSON written in the worker thread too, not on the event loop
            return json.dumps(encode(m.forward(prompt, engine), encoding), allow_nan=False)

        return Response(await run_in_threadpool(run), media_type="application/json")

    async def next_token(request):
        data = await body_of(request)
        prompt, engine = prompt_and_engine(data)
        return JSONResponse(await run_in_threadpool(model().next_token, prompt, engine,
                                                    controls(data)))

    async def generate(request):
        data = await body_of(request)
        prompt, engine = prompt_and_engine(data)
        count = requests.whole(data, "max_new_tokens", 50, 1, MAX_NEW_TOKENS)
        seed = requests.whole(data, "seed", None, 0, 2**32 - 1)
        m, picked = model(), controls(data)
        await run_in_threadpool(m.encode, prompt)  # a bad prompt is a 400 before streaming

        def lines():
            for item in m.generate(prompt, engine, count, picked, seed):
                yield json.dumps(item) + "\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    async def translate(request):
        data = await body_of(request)
        sentence = requests.text(data, "sentence")
        engine = requests.choice(data, "engine", requests.ENGINES, "torch")
        beam = requests.whole(data, "beam_size", 4, 1, MAX_BEAM)
        m = model("transformer")

        def run():
            return json.dumps(encode(m.translate(sentence, engine, beam), "lists"))

        return Response(await run_in_threadpool(run), media_type="application/json")

    async def metrics(request):
        since = request.query_params.get("since", "0")
        if not since.isdigit():
            raise BadRequest(f"'since' must be a whole number of records, got {since!r}")
        if explainer is None:
            model()
        return JSONResponse(await run_in_threadpool(read_metrics, explainer.run_folder,
                                                    int(since)))

    async def leaf_start(request):
        return JSONResponse(leaf.start())

    async def leaf_forward(request):
        return JSONResponse(await run_in_threadpool(leaf.forward, await body_of(request)))

    async def leaf_step(request):
        return JSONResponse(await run_in_threadpool(leaf.step, await body_of(request)))

    api = [
        Route("/info", info),
        Route("/tokens", tokens, methods=["POST"]),
        Route("/forward", forward, methods=["POST"]),
        Route("/next", next_token, methods=["POST"]),
        Route("/generate", generate, methods=["POST"]),
        Route("/translate", translate, methods=["POST"]),
        Route("/metrics", metrics),
        Route("/leaf-flower", leaf_start),
        Route("/leaf-flower/forward", leaf_forward, methods=["POST"]),
        Route("/leaf-flower/step", leaf_step, methods=["POST"]),
    ]
    routes = [Mount("/api", routes=api), Mount("/", StaticFiles(directory=STATIC, html=True))]
    handlers = {BadRequest: refused, ChalkError: refused, HTTPException: http_refused}
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=LOCAL_NAMES)] \
        if local_only else []
    return Starlette(routes=routes, exception_handlers=handlers, middleware=middleware)


async def refused(request: Request, exc: ChalkError) -> JSONResponse:
    """A request the model cannot answer: 4xx with one line naming the problem."""
    return JSONResponse({"error": str(exc)}, status_code=getattr(exc, "status", 400))


async def http_refused(request: Request, exc: HTTPException) -> JSONResponse:
    """Unknown paths and wrong methods, as JSON like every other refusal."""
    return JSONResponse({"error": f"{exc.detail}: {request.method} {request.url.path}"},
                        status_code=exc.status_code)
