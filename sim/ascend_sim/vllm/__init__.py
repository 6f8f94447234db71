"""The simulated ``vllm`` command of the simulated vLLM-Ascend image.

No NPU and no real vLLM exist on a simulated node, so this package stands in for the two
``vllm`` sub-commands the collection drives -- ``vllm serve`` and ``vllm bench serve`` -- and
is faithful in what a deployer can get wrong: the flags (driven by the option table of the
real vLLM 0.33.0 parser), the chips (``ASCEND_RT_VISIBLE_DEVICES`` against the simulated
driver's state), the model directory, the OpenAI-compatible HTTP API, MiniMax tool calls and
reasoning, prefill/decode disaggregation over a real TCP "KV" side channel, and external
data parallelism (ranks that wait for each other, and stall together when one is lost).

Standard library plus aiohttp. Modules:

``cli``        entry point (``python -m ascend_sim.vllm serve ...``)
``options``    the argparse parser built from ``../data/vllm-serve-options.json``
``config``     checks of the parsed flags and the model directory -> ``ServeConfig``
``devices``    chips and ``/dev/davinciN``
``tokens``     the fake tokenizer, the chat template, the fake model's words
``tools``      when the fake model calls a tool, and its MiniMax XML
``fakemodel``  what the fake MiniMax-M2 writes for a request (reasoning, answer, tool call)
``parsers``    the ``minimax_m2`` tool-call parser and the reasoning parsers
``kv``         the Mooncake-like KV side channel (prefill serves, decode fetches)
``dp``         the external data-parallel handshake and the group's link afterwards
``metrics``    Prometheus ``/metrics``
``engine``     one fake engine: latency model, queueing, metrics, KV hand-off
``api``        the aiohttp application (OpenAI-compatible routes)
``serve``      the ``vllm serve`` life cycle
``bench``      ``vllm bench serve``
``logs``       vLLM-shaped log lines on stderr

Environment knobs of the simulation (real vLLM knobs keep their real names):
``VLLM_SIM_LOAD_SECONDS`` (3), ``VLLM_SIM_PREFILL_S_PER_TOKEN`` (0.00005),
``VLLM_SIM_DECODE_S_PER_TOKEN`` (0.02), ``VLLM_SIM_KV_TIMEOUT`` (10),
``VLLM_SIM_KV_MAX_REQUESTS`` (10000), ``VLLM_SIM_DRAIN_SECONDS`` (5),
``VLLM_SIM_DP_LOG_INTERVAL`` (5), ``VLLM_SIM_ADMIN`` (``POST /sim/engine_dead``),
``VLLM_SIM_WATCHDOG_SECONDS`` (5, vLLM's fixed launcher watchdog period),
``ASCEND_SIM_SKIP_DEVICE_CHECK`` (tests only); real ones honoured: ``ASCEND_RT_VISIBLE_DEVICES``,
``VLLM_HOST_IP``, ``VLLM_API_KEY``, ``VLLM_ALLOW_LONG_MAX_MODEL_LEN``,
``VLLM_MOONCAKE_ABORT_REQUEST_TIMEOUT``, ``VLLM_ENGINE_READY_TIMEOUT_S``,
``VLLM_LOG_STATS_INTERVAL``, ``VLLM_LOGGING_LEVEL``, ``VLLM_KEEP_ALIVE_ON_ENGINE_DEATH``,
``HCCL_EXEC_TIMEOUT`` (1836).
"""

VLLM_VERSION = "0.33.0"
