"""The ``vllm`` command: ``vllm serve ...``, ``vllm bench serve ...``, ``vllm --version``."""

from __future__ import annotations

import sys

from ascend_sim.vllm import VLLM_VERSION

USAGE = "usage: vllm [-h] [-v] {chat,complete,serve,bench,collect-env,run-batch} ..."


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        print("\nvLLM CLI (simulated vLLM-Ascend): serve, bench serve")
        return 0 if args else 2
    if args[0] in ("-v", "--version"):
        print(VLLM_VERSION)
        return 0
    if args[0] == "serve":
        from ascend_sim.vllm.serve import run_serve

        return run_serve(args[1:])
    if args[0] == "bench":
        if len(args) > 1 and args[1] == "serve":
            from ascend_sim.vllm.bench import run_bench

            return run_bench(args[2:])
        sys.stderr.write("usage: vllm bench <bench_type> [options]\n")
        sys.stderr.write("vllm bench: error: the simulator provides `vllm bench serve` only\n")
        return 2
    choices = "'chat', 'complete', 'serve', 'bench', 'collect-env', 'run-batch'"
    sys.stderr.write(f"{USAGE}\nvllm: error: argument subparser: invalid choice: '{args[0]}' (choose from {choices})\n")
    return 2
