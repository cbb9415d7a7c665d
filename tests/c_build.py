"""Whether an install here could build chalklm's optional C files (`_merge.c`,
`_decode.c`): a C compiler where setuptools looks for one ($CC, else the compiler Python
was built with). Where there is one, the C modules must be built; where there is none,
chalklm installs without them and their tests that need them are skipped, while the tests
of the Python and PyTorch fallbacks run everywhere."""

import os
import shlex
import shutil
import sysconfig

import pytest


def c_compiler() -> str | None:
    """The path of the C compiler setuptools would use, or None."""
    command = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return shutil.which(shlex.split(command)[0])


def needs(module, name: str):
    """Skip a test of the C module `name` where it was not built (`module` is None)."""
    return pytest.mark.skipif(module is None, reason=f"{name} is not built (no C compiler when "
                              "chalklm was installed); the fallback tests run instead")
