"""ascend_pd_proxy: the prefill/decode request router in front of vLLM-Ascend instances.

Runs from the vLLM-Ascend image as it is (Python 3.10+, aiohttp): ``python3 -m
ascend_pd_proxy --config config.json``. See ``config.py`` for the file, ``server.py`` for
the request flow, ``backends.py`` for health and balancing, ``health.py`` for the active
checks, ``admin.py`` for the admin API and ``lifecycle.py`` for reload and drain. With
``workers`` > 1, ``supervisor.py`` runs the worker processes, ``workers.py`` links them and
``aggregate.py`` merges their metrics and admin listings.
"""

import logging

__version__ = "0.1.0"

log = logging.getLogger("ascend_pd_proxy")
