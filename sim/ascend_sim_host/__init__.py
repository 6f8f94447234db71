"""Host side of the Ascend cluster simulator: the commands of ``sim/ascend-sim``.

``cli`` (the argument parser), ``build`` (the images; ``inputs``: their input hashes,
``package``: what of ``sim/ascend_sim`` goes into them), ``cluster`` (up, down, status),
``inventory``, ``node_exec`` (exec, fault); ``config`` and ``shell`` are what they share.
Runs on the machine with the Docker engine, never inside a node: ``sim/ascend_sim`` is the
package that runs in the nodes and images. Python 3.11+, standard library only.
"""
