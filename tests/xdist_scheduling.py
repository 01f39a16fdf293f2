"""How `pytest -n 2` shares the suite between two workers (pytest-xdist's scheduler hook, set in conftest.py).

Each test module is one unit of work (its module fixtures, gateways and browsers, start once), except that the
tests starting Ray clusters form one unit that runs first: two clusters starting at once on 2 cores miss Ray's
own start-up waits, and that unit is the longest, so the other worker takes every other module meanwhile.
(`--dist loadgroup` with `xdist_group` marks would say the same, but pytest 9.2's node ids drop the group that
xdist 3.8 writes into them: pytest-dev/pytest-xdist#1386.)
"""

from __future__ import annotations

from xdist.scheduler import LoadScopeScheduling
from xdist.workermanage import WorkerController

RAY_CLUSTER_MODULES = frozenset({"tests/test_ray.py", "tests/test_kuberay.py"})
RAY_CLUSTER_TESTS = frozenset({"tests/test_notebooks.py::test_scale_out_notebook_outputs"})  # tutorial 07
RAY_CLUSTERS = "ray-clusters"


class RayClustersFirst(LoadScopeScheduling):
    """Modules as units of work, the Ray-starting ones as one unit handed out first."""

    def _split_scope(self, nodeid: str) -> str:
        module = nodeid.split("::", 1)[0]
        return RAY_CLUSTERS if module in RAY_CLUSTER_MODULES or nodeid in RAY_CLUSTER_TESTS else module

    def _assign_work_unit(self, node: WorkerController) -> None:
        if RAY_CLUSTERS in self.workqueue:
            self.workqueue.move_to_end(RAY_CLUSTERS, last=False)
        super()._assign_work_unit(node)
