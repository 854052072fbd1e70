"""The Python baselines of ``memspace bench`` (crates/memspace-bench/bench_baselines.py), for
``python -m memspace.bench``: the extension carries the script's text, so that the program
and the package measure the baselines with one copy of the code. Run here, its functions
belong to this module, so that processes started with ``spawn`` find them by name."""

from ._memspace import BASELINES_SCRIPT

exec(compile(BASELINES_SCRIPT, "bench_baselines.py", "exec"))
