"""ascend_pd_proxy: the prefill/decode request router in front of vLLM-Ascend instances.

Runs from the vLLM-Ascend image as it is (Python 3.10+, aiohttp): ``python3 -m
ascend_pd_proxy --config config.json``. See ``config.py`` for the file, ``server.py`` for
the request flow, ``backends.py`` for health and balancing, ``health.py`` for the active
checks, ``admin.py`` for the admin API and ``lifecycle.py`` for reload and drain.
"""

import logging

__version__ = "0.1.0"

log = logging.getLogger("ascend_pd_proxy")
