"""Chat: a conversation turned into text by the model's own template, answered token by token.

A chat model was trained on conversations written in one fixed layout, for example
ChatML's `<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n`. The layout ships with
the model as a Jinja2 template (tokenizer_config.json's `chat_template`; chalklm keeps it in
the BPE tokenizer's `chat`). Chatting is then plain generation: render the conversation so
far, end it with the start of the assistant's turn (`add_generation_prompt`), and let the
model write until it emits a token that ends its turn (`chat["stop"]`).

The template is rendered exactly as transformers' `apply_chat_template` renders it: a
sandboxed Jinja2 environment (templates come from strangers: no file or attribute access)
with `trim_blocks` and `lstrip_blocks`, the loop controls, and the same helpers
(`raise_exception`, `strftime_now`, a `tojson` that leaves non-ASCII text as it is).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator
from datetime import datetime

from chalklm.errors import ConfigError


def _generation_tag():
    """`{% generation %}...{% endgeneration %}`, which some templates use to mark what the
    assistant wrote (for training masks): here it renders its body unchanged."""
    from jinja2 import nodes
    from jinja2.ext import Extension

    class Generation(Extension):
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    return Generation


@functools.lru_cache(maxsize=8)
def compile_template(template: str):
    """The compiled Jinja2 template, in transformers' environment."""
    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[_generation_tag(), loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(template)
    except jinja2.TemplateError as exc:
        raise ConfigError(f"the chat template is not valid Jinja2 ({exc})") from None


def render(chat: dict, messages: list[dict], add_generation_prompt: bool = True) -> str:
    """The conversation `messages` ([{"role": ..., "content": ...}, ...]) as the text the
    model reads, ending with the start of the assistant's turn when asked."""
    import jinja2

    try:
        return compile_template(chat["template"]).render(
            messages=messages, tools=None, documents=None,
            add_generation_prompt=add_generation_prompt, **chat.get("tokens", {}))
    except jinja2.TemplateError as exc:
        raise ConfigError(f"the chat template refused the conversation ({exc})") from None


def chat_of(tokenizer, where: str) -> dict:
    """The tokenizer's chat format; a clear error when the model has none."""
    chat = getattr(tokenizer, "chat", None)
    if not chat or not chat.get("template"):
        raise ConfigError(f"{where}: the tokenizer has no chat template, so this model was not "
                          "made to chat; import a chat model with chalklm import-hf (its "
                          "tokenizer_config.json holds chat_template), or use chalklm sample")
    if not stop_ids(tokenizer, chat):
        raise ConfigError(f"{where}: the chat format names no special token that ends a turn "
                          "(tokenizer_config.json's eos_token, generation_config.json's "
                          "eos_token_id)")
    return chat


def stop_ids(tokenizer, chat: dict) -> set[int]:
    """The ids of the tokens that end the model's turn."""
    return {tokenizer.special.ids[text] for text in chat["stop"] if text in tokenizer.special.ids}


def answer(model, tokenizer, chat: dict, messages: list[dict], max_new_tokens: int,
           **controls) -> Iterator[int]:
    """The ids of the model's answer to `messages`, one at a time as they are generated,
    without the token that ends its turn."""
    from chalklm.generation import stream

    ids = tokenizer.encode(render(chat, messages), allowed_special="all")
    ends = stop_ids(tokenizer, chat)
    for step in stream(model, [ids], max_new_tokens, **controls):
        token = step.ids[0]
        if token is None or token in ends:
            return
        yield token


def converse(model, tokenizer, lines: Iterable[str], write, max_new_tokens: int = 256,
             system: str | None = None, prompt=None, **controls) -> list[dict]:
    """The chat loop: each line is the user's turn; the answer is written as it comes
    (`write(text)`, then a newline), and joins the history that the next turn renders.
    `prompt()` is called before each line is read (to show a marker). Returns the messages."""
    chat = chat_of(tokenizer, "chat")
    messages = [{"role": "system", "content": system}] if system else []
    for line in lines:
        text = line.rstrip("\n")
        if not text.strip():
            continue
        messages.append({"role": "user", "content": text})
        ids: list[int] = []
        written = 0
        for token in answer(model, tokenizer, chat, messages, max_new_tokens, **controls):
            ids.append(token)
            reply = tokenizer.decode(ids).rstrip("\ufffd")  # hold back a half character
            write(reply[written:])
            written = len(reply)
        reply = tokenizer.decode(ids)
        write(reply[written:] + "\n")
        messages.append({"role": "assistant", "content": reply})
        if prompt is not None:
            prompt()
    return messages
