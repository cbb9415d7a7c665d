"""`chalklm chat`: the conversation rendered as transformers' apply_chat_template renders it,
answers that stream, stop at the end-of-turn token and stay in the history."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from hf_llama import SMOLLM2_TEMPLATE, TINY, llama_folder, save_tokenizer, train_tokenizer

import chalklm
from chalklm.chat import converse, render
from chalklm.cli import main
from chalklm.errors import ConfigError
from chalklm.interop import import_hf

# A Llama 3-style template: bos_token, a system message pulled out, loop controls, tojson,
# raise_exception on a bad role.
LLAMA3_STYLE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set system = messages[0]"
    "['content'] %}{% set messages = messages[1:] %}{% else %}{% set system = 'none' %}"
    "{% endif %}<|im_start|>system\n{{ system }}<|im_end|>\n"
    "{% for message in messages %}{% if message['role'] not in ['user', 'assistant'] %}"
    "{{ raise_exception('unknown role ' + message['role']) }}{% endif %}"
    "{% if loop.index > 20 %}{% break %}{% endif %}\n"
    "  <|im_start|>{{ message['role'] }}\n{{ message['content'] | trim }}"
    "{{ ' meta=' + (message | tojson) if message.get('meta') }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CONVERSATIONS = [
    [{"role": "user", "content": "Hello! 😀"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "你好，世界"},
     {"role": "assistant", "content": "Hi  there\n"}, {"role": "user", "content": "  2+2? "}],
    [{"role": "user", "content": "é", "meta": "ü"}],
]


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    """(checkpoint folder, HF folder) of a random Llama with a SmolLM2-style tokenizer."""
    folder = tmp_path_factory.mktemp("chat")
    tok = train_tokenizer("smollm2")
    llama_folder(folder / "hf", seed=4, **{**TINY, "initializer_range": 0.3,
                                           "vocab_size": tok.get_vocab_size(),
                                           "max_position_embeddings": 256})
    save_tokenizer(folder / "hf", tok, SMOLLM2_TEMPLATE)
    import_hf(folder / "hf", folder / "ck")
    return folder / "ck", folder / "hf"


@pytest.mark.parametrize("template", [SMOLLM2_TEMPLATE, LLAMA3_STYLE])
@pytest.mark.parametrize("conversation", CONVERSATIONS)
def test_render_equals_apply_chat_template(chat_model, tmp_path, template, conversation):
    from transformers import AutoTokenizer

    _, hf_folder = chat_model
    hf = AutoTokenizer.from_pretrained(hf_folder)
    hf.chat_template = template
    _, tokenizer = chalklm.load(chat_model[0])
    chat = {**tokenizer.chat, "template": template}
    text = render(chat, conversation)
    assert text == hf.apply_chat_template(conversation, tokenize=False,
                                          add_generation_prompt=True)
    ids = hf.apply_chat_template(conversation, tokenize=True, add_generation_prompt=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    assert tokenizer.encode(text, allowed_special="all") == list(ids)
    assert text != render(chat, conversation, add_generation_prompt=False)


def test_a_template_that_raises_is_one_clear_error(chat_model):
    _, tokenizer = chalklm.load(chat_model[0])
    chat = {**tokenizer.chat, "template": LLAMA3_STYLE}
    with pytest.raises(ConfigError, match="refused the conversation.*unknown role tool"):
        render(chat, [{"role": "tool", "content": "x"}])
    with pytest.raises(ConfigError, match="not valid Jinja2"):
        render({**chat, "template": "{% for %}"}, [])


def test_the_sandbox_keeps_templates_from_python(chat_model):
    _, tokenizer = chalklm.load(chat_model[0])
    escape = "{{ messages.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(ConfigError, match="refused"):
        render({**tokenizer.chat, "template": escape}, [{"role": "user", "content": "x"}])


def scripted(tokenizer, replies: list[str], seen: list[list[int]]):
    """A next-token function that writes each reply in turn and then <|im_end|>, recording
    the ids it was given at the start of each answer."""
    end = tokenizer.special.ids["<|im_end|>"]
    queue: list[int] = []

    def next_logits(context: np.ndarray) -> np.ndarray:
        if not queue:
            seen.append(context[0].tolist())
            queue.extend(tokenizer.encode(replies[len(seen) - 1]) + [end])
        scores = np.zeros(tokenizer.vocab_size, dtype=np.float32)
        scores[queue.pop(0)] = 10.0
        return scores

    return next_logits


def test_answers_stop_at_the_end_of_turn_and_stay_in_the_history(chat_model):
    _, tokenizer = chalklm.load(chat_model[0])
    seen: list[list[int]] = []
    replies = ["Thou art welcome, 你好 😀!", "Fare thee well."]
    model = scripted(tokenizer, replies, seen)
    pieces: list[str] = []
    messages = converse(model, tokenizer, ["Good morrow\n", "\n", "Adieu\n"], pieces.append,
                        max_new_tokens=40, temperature=0, block_size=512)
    assert "".join(pieces) == replies[0] + "\n" + replies[1] + "\n"
    assert len([p for p in pieces if p]) > 6  # streamed: written as the tokens came
    assert "\ufffd" not in "".join(pieces)  # never half a character (😀 is several tokens)
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[1]["content"] == replies[0]
    chat = tokenizer.chat
    first = [{"role": "user", "content": "Good morrow"}]
    second = first + [{"role": "assistant", "content": replies[0]},
                      {"role": "user", "content": "Adieu"}]
    assert seen == [tokenizer.encode(render(chat, first), allowed_special="all"),
                    tokenizer.encode(render(chat, second), allowed_special="all")]


def test_chat_command_answers_piped_lines_as_transformers_would(chat_model, monkeypatch,
                                                                 capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    checkpoint, hf_folder = chat_model
    monkeypatch.setattr("sys.stdin", io.StringIO("Hello there\nWhat light?\n"))
    with pytest.raises(SystemExit) as exit:
        main(["chat", "--checkpoint", str(checkpoint), "--max-new-tokens", "6",
              "--device", "cpu"])
    assert exit.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    hf_tok = AutoTokenizer.from_pretrained(hf_folder)
    hf = AutoModelForCausalLM.from_pretrained(hf_folder).eval()
    hf.generation_config.eos_token_id = hf_tok.convert_tokens_to_ids("<|im_end|>")
    hf.generation_config.pad_token_id = 0
    conversation, expected = [], []
    for question in ["Hello there", "What light?"]:
        conversation.append({"role": "user", "content": question})
        ids = hf_tok.apply_chat_template(conversation, add_generation_prompt=True,
                                         return_tensors="pt", return_dict=True)["input_ids"]
        with torch.no_grad():
            new = hf.generate(ids, max_new_tokens=6, do_sample=False,
                              attention_mask=torch.ones_like(ids))[0, ids.shape[1]:]
        reply = hf_tok.decode(new, skip_special_tokens=True)
        expected.append(reply)
        conversation.append({"role": "assistant", "content": reply})
    assert lines == expected


def test_chat_refuses_a_model_without_a_template(tmp_path, capsys):
    from chalklm.checkpoint import save_checkpoint
    from chalklm.config import GPTConfig
    from chalklm.models import GPT
    from chalklm.tokenizers import CharTokenizer

    config = GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=1, n_embd=8)
    save_checkpoint(tmp_path / "ck", GPT(config).state_dict(), config, CharTokenizer("abc \n"))
    with pytest.raises(SystemExit) as exit:
        main(["chat", "--checkpoint", str(tmp_path / "ck"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and err.count("\n") == 1 and "no chat template" in err
