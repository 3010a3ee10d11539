"""llama-cpp-python's server with weight repacking off: `python -m tests.real.llama_server ARGS`,
where ARGS are `python -m llama_cpp.server`'s own.

On Xeons with AMX (`amx_tile` in /proc/cpuinfo), the llama-cpp-python 0.3.36 build repacks the
weights into ggml's AMX buffer type when it loads a model, and the server process then dies on
its first matmul (a general protection fault in libggml-cpu.so): HTTP 200 and the head are out,
then the connection closes. The model parameter `use_extra_bufts = False` (llama.cpp's
`--no-repack`) avoids it, but the server has no option for it. The ctypes struct has the field,
and `Llama` starts from `llama_model_default_params()`: this sets the field there, then runs the
server as `python -m llama_cpp.server` would. Repacking only makes matmuls faster; it is off on
every CPU, so the suite runs the same code on machines with AMX and without.
"""

from __future__ import annotations

import llama_cpp.llama_cpp as llama_cpp_c

_default_params = llama_cpp_c.llama_model_default_params


def _params_without_repacking() -> llama_cpp_c.llama_model_params:
    params = _default_params()
    params.use_extra_bufts = False
    return params


def no_repacking() -> None:
    """Every model loaded from now on, in this process, without repacked weights."""
    llama_cpp_c.llama_model_default_params = _params_without_repacking  # read by Llama.__init__ at each load


def main() -> None:
    no_repacking()
    from llama_cpp.server.__main__ import main as server_main

    server_main()


if __name__ == "__main__":
    main()
