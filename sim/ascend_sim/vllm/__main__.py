"""``python -m ascend_sim.vllm ...`` behaves like the ``vllm`` command."""

import sys

from ascend_sim.vllm.cli import main

sys.exit(main(sys.argv[1:]))
