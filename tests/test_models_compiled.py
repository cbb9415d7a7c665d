"""torch.compile with chalklm's inductor options computes what the eager model computes."""

import torch
import torch.nn.functional as F

from chalklm.config import GPTConfig
from chalklm.models import GPT
from chalklm.models.compiling import compiled


def test_compiled_gelu_equals_eager_far_into_both_tails():
    """The decomposed tanh, 2 / (1 + exp(-2a)) - 1, must not overflow into NaN where exp
    does (a < -44) nor lose the small values near 0: values and gradients from -60 to 60."""
    x = torch.linspace(-60, 60, 4001, dtype=torch.float64).float().requires_grad_()
    gelu = compiled(lambda t: F.gelu(t, approximate="tanh"))
    got = gelu(x)
    (got_grad,) = torch.autograd.grad(got.sum(), x)
    want = F.gelu(x, approximate="tanh")
    (want_grad,) = torch.autograd.grad(want.sum(), x)
    assert torch.isfinite(got).all() and torch.isfinite(got_grad).all()
    torch.testing.assert_close(got, want, rtol=0, atol=5e-6)
    torch.testing.assert_close(got_grad, want_grad, rtol=0, atol=5e-6)


def test_compiled_gpt_loss_and_gradients_equal_eager():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=16))
    ids, targets = torch.randint(0, 13, (3, 8)), torch.randint(0, 13, (3, 8))

    def run(forward):
        model.zero_grad(set_to_none=True)
        logits, loss = forward(ids, targets)
        loss.backward()
        return logits.detach(), loss.detach(), {n: p.grad for n, p in model.named_parameters()}

    eager, fast = run(model), run(compiled(model))
    torch.testing.assert_close(fast[0], eager[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(fast[1], eager[1], rtol=0, atol=1e-5)
    for name, grad in eager[2].items():
        torch.testing.assert_close(fast[2][name], grad, rtol=0, atol=1e-5, msg=name)


def _engine(compile_, **train):
    from chalklm.training.config import TrainConfig
    from chalklm.training.distributed import Distributed
    from chalklm.training.engines import TorchEngine

    config = GPTConfig(vocab_size=13, block_size=8, n_layer=1, n_head=2, n_embd=16)
    return TorchEngine(config, TrainConfig(dtype="fp32", compile=compile_, **train), "cpu",
                       "fp32", Distributed())


def test_engine_compiles_when_asked_and_says_the_first_steps_take_longer(capsys):
    engine = _engine(True)
    assert engine.train_model is not engine.model
    assert "compiling the model" in capsys.readouterr().err
    eager = _engine(False)
    assert eager.train_model is eager.model
    assert "compiling" not in capsys.readouterr().err
    short = _engine("auto", max_steps=20)  # "auto": not worth compiling for 20 steps
    assert short.train_model is short.model and "compiling" not in capsys.readouterr().err
    long = _engine("auto", max_steps=5000, time_budget=300)
    assert long.train_model is not long.model and "compiling" in capsys.readouterr().err


def test_without_a_cpp_compiler_the_engine_trains_eager_and_says_why(monkeypatch, capsys):
    import torch._inductor.config as inductor_config

    from chalklm.models.compiling import unavailable

    monkeypatch.setattr(inductor_config.cpp, "cxx", ("/nonexistent/c++",))
    assert "needs a C++ compiler" in unavailable("cpu")
    engine = _engine(True)
    assert engine.train_model is engine.model
    err = capsys.readouterr().err
    assert "needs a C++ compiler" in err and "training without it" in err
