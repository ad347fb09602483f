"""The Ray cluster a `--ray` job runs on (docs/scale-out.md): starting or joining it, its
nodes, how many rounds fit at once, and the actor that shares each host's cores among its
rounds (`CoreAllocator`). `python -m lab.ablate` imports this module to check its flags before
anything trains, and the actor's process runs it: it imports no torch, and Ray (optional) only
when a job asks for it. The rounds themselves run in `lab.engine.ray_rounds`."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from lab import REPO_ROOT
from lab.engine.job import Job
from lab.errors import LabError

# What the task ships to workers that lack the checkout: the code, not outputs or caches.
SHIPPED_EXCLUDES = [".git", ".venv", "reports", "docs", ".pytest-lab-cache", "*.png", "*.svg"]
_joined: dict[str, str] = {}  # the address this driver joined ("" for a local Ray)


def require_ray() -> Any:
    """The `ray` module, or a one-line error saying how to install it."""
    try:
        import ray  # here, not at the top: Ray is optional (pip install 'lab[ray]')
    except ImportError:
        raise LabError("--ray: Ray is not installed; pip install 'lab[ray]'") from None
    return ray


@dataclass(frozen=True)
class Node:
    host: str
    node_id: str
    cpus: int
    gpus: int


@dataclass(frozen=True)
class Cluster:
    address: str  # as given; "" for a Ray started here
    nodes: tuple[Node, ...]  # the live nodes when the job connected

    @property
    def has_gpus(self) -> bool:
        return any(node.gpus for node in self.nodes)


def connect(address: str) -> Cluster:
    """Start a local Ray (`address` ""; Ray itself honours $RAY_ADDRESS then) or join the
    cluster at `address` ("auto" or HOST:PORT)."""
    ray = require_ray()
    if ray.is_initialized():
        address = _joined.get("address", address)
    else:
        try:
            ray.init(
                address=address or None,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.ERROR,
                # Nodes without the checkout get its code; records prove which code ran.
                runtime_env={"working_dir": str(REPO_ROOT), "excludes": SHIPPED_EXCLUDES},
            )
        except (ConnectionError, RuntimeError, ValueError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
            where = address or "(local)"
            raise LabError(f"--ray {where}: cannot start or join Ray: {reason}") from None
        _joined["address"] = address
    nodes = tuple(
        Node(
            host=node["NodeManagerHostname"],
            node_id=node["NodeID"],
            cpus=int(node["Resources"].get("CPU", 0)),
            gpus=int(node["Resources"].get("GPU", 0)),
        )
        for node in ray.nodes()
        if node["Alive"]
    )
    return Cluster(address=address, nodes=nodes)


def default_round_cpus(cluster: Cluster, device: str) -> int:
    """Cores reserved per round when `--round-cpus` is not given: on GPUs, a node's cores
    shared evenly among its GPUs; on CPUs, a whole host (one round at a time per host, the
    honest default: concurrency on one host is opt-in)."""
    if device == "cuda":
        return max(1, min(node.cpus // node.gpus for node in cluster.nodes if node.gpus))
    return max(1, min(node.cpus for node in cluster.nodes))


def check_fits(job: Job, cluster: Cluster) -> None:
    """Refuse a job no node can run (its tasks would wait forever)."""
    needs_gpu = job.device == "cuda"
    fitting = [
        node
        for node in cluster.nodes
        if node.cpus >= (job.round_cpus or 1) and (node.gpus or not needs_gpu)
    ]
    if not fitting:
        largest = max((node.cpus for node in cluster.nodes), default=0)
        gpu = " and a GPU" if needs_gpu else ""
        raise LabError(
            f"--round-cpus {job.round_cpus}: no node of the Ray cluster has {job.round_cpus} "
            f"CPUs{gpu} (the largest has {largest})"
        )


class CoreAllocator:
    """One per job: hands each round on a host a disjoint set of that host's cores, and counts
    how many rounds run at once there. Leases are released by the round's task when it ends,
    and by the driver when the task's worker died."""

    def __init__(self) -> None:
        self.held: dict[str, dict[str, tuple[int, ...]]] = {}  # node -> lease -> cores
        self.node_of: dict[str, str] = {}
        self.peak_of: dict[str, int] = {}  # lease -> most rounds at once on its node

    def acquire(self, node: str, lease: str, cores: list[int], count: int) -> list[int]:
        """`count` of `cores` no other round on `node` holds; where too few are free (a node
        advertising more CPUs than it has cores), the least shared ones."""
        held = self.held.setdefault(node, {})
        busy = Counter(core for taken in held.values() for core in taken)
        free = [core for core in cores if not busy[core]]
        chosen = free[:count] if len(free) >= count else sorted(cores, key=busy.__getitem__)
        held[lease] = tuple(sorted(chosen[:count]))
        self.node_of[lease] = node
        for other in held:
            self.peak_of[other] = max(self.peak_of.get(other, 0), len(held))
        return list(held[lease])

    def mark(self, lease: str) -> None:
        """A run starts: its count starts from the rounds on its node now."""
        self.peak_of[lease] = len(self.held[self.node_of[lease]])

    def peak(self, lease: str) -> int:
        return self.peak_of[lease]

    def release(self, lease: str) -> None:
        node = self.node_of.pop(lease, None)
        if node is not None:
            self.held[node].pop(lease, None)
        self.peak_of.pop(lease, None)


def rounds_at_once(job: Job, cluster: Cluster) -> int:
    """How many rounds the cluster runs at once: a GPU each, or `round_cpus` cores each."""
    if job.device == "cuda":
        return max(1, sum(node.gpus for node in cluster.nodes))
    return max(1, sum(node.cpus // (job.round_cpus or 1) for node in cluster.nodes))
