"""vLLM's speculative-decoding counters of every instance, relayed on the proxy's ``/metrics``.

``vllm bench serve`` measures speculative decoding by reading ``{base_url}/metrics`` before and
after its run: it sums, whatever their labels, every sample whose name starts with
``vllm:spec_decode`` and ends with ``_total``. Pointed at the proxy, it would find only the
proxy's own series; so a scrape of the proxy's ``/metrics`` also fetches each active instance's
``/metrics`` (concurrently, within ``health.timeout``) and relays those samples under vLLM's own
names, each with the instance's ``backend`` and ``phase`` labels added. Their sum is the sum
over the deployment's servers, which is what the client computes against a single server.

An instance that does not answer keeps its last relayed values (a counter must not drop
between the benchmark's two scrapes because one scrape failed); ``pd_proxy_backend_metrics_up``
says whether the last fetch succeeded. ``GET /metrics?relay=false`` leaves the relay out: the
proxy's own series only, and no fetch from the instances. Prometheus, which scrapes the
instances themselves, must scrape the proxy that way, or it would count every relayed sample
twice (proxy/README.md).
"""

from __future__ import annotations

import asyncio
import re
from typing import Dict, List, Mapping, Optional, Tuple

import aiohttp

from .backends import Backend, Pool
from .http_util import deadline
from .metrics import Labels, _labels, _number

PREFIX = "vllm:spec_decode"
Sample = Tuple[str, Labels, float]

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_UNESCAPE = {"\\\\": "\\", "\\n": "\n", '\\"': '"'}
OFF = ("0", "false", "no", "off")


def _parse_labels(text: str) -> Optional[Labels]:
    labels = []
    end = 0
    for match in _LABEL.finditer(text):
        if match.start() != end:
            return None
        value = re.sub(r"\\.", lambda m: _UNESCAPE.get(m.group(0), m.group(0)), match.group(2))
        labels.append((match.group(1), value))
        end = match.end()
    return tuple(labels) if end == len(text.rstrip()) else None


def spec_decode_samples(text: str) -> List[Sample]:
    """The ``vllm:spec_decode*_total`` samples of a Prometheus text (``_created`` and the rest left out)."""
    samples: List[Sample] = []
    for raw in text.split("\n"):
        line = raw.strip()
        if not line.startswith(PREFIX):
            continue
        match = _SAMPLE.match(line)
        if match is None or not match.group(1).endswith("_total"):
            continue
        labels = _parse_labels(match.group(2) or "")
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        if labels is not None:
            samples.append((match.group(1), labels, value))
    return samples


class SpecDecodeRelay:
    """Fetches and renders the relayed samples; remembers each instance's last ones."""

    def __init__(self, pools: Mapping[str, Pool], auth_headers: Mapping[str, Dict[str, str]], timeout: float) -> None:
        self.pools = pools
        self.auth_headers = auth_headers
        self.timeout = timeout
        self._last: Dict[Tuple[str, str], List[Sample]] = {}

    async def _fetch(self, session: aiohttp.ClientSession, backend: Backend) -> Optional[List[Sample]]:
        try:
            async with deadline(self.timeout):
                headers = self.auth_headers.get(backend.phase, {})
                async with session.get(backend.url + "/metrics", headers=headers) as answer:
                    if answer.status != 200:
                        return None
                    return spec_decode_samples((await answer.read()).decode("utf-8", "replace"))
        except (asyncio.TimeoutError, aiohttp.ClientError, UnicodeError):
            return None

    async def render(self, session: aiohttp.ClientSession) -> List[str]:
        backends = [b for pool in self.pools.values() for b in pool.active()]
        fetched = await asyncio.gather(*(self._fetch(session, b) for b in backends))
        keys = [(b.phase, b.url) for b in backends]
        for key, samples in zip(keys, fetched):
            if samples is not None:
                self._last[key] = samples
        self._last = {key: self._last[key] for key in keys if key in self._last}  # removed instances go

        families: Dict[str, List[str]] = {}
        for backend, key in zip(backends, keys):
            added = (("backend", backend.name), ("phase", backend.phase))
            for name, labels, value in self._last.get(key, []):
                families.setdefault(name, []).append(f"{name}{_labels(labels + added)} {_number(value)}")
        lines: List[str] = []
        for name in sorted(families):
            lines.append(f"# HELP {name} vLLM's {name} of each instance, relayed (labels backend, phase).")
            lines.append(f"# TYPE {name} counter")
            lines.extend(families[name])
        up = "pd_proxy_backend_metrics_up"
        lines.append(f"# HELP {up} 1 when the last relay of the instance's /metrics succeeded, else 0.")
        lines.append(f"# TYPE {up} gauge")
        for backend, ok in zip(backends, fetched):
            lines.append(f"{up}{_labels((('backend', backend.name), ('phase', backend.phase)))} {int(ok is not None)}")
        return lines
