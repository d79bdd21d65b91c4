"""A worker's Celery node name: the pod's in Kubernetes, the process's elsewhere."""

from __future__ import annotations

import os
import socket

from cli.commands.worker import node_name
from worker.settings import WorkerSettings


def test_in_a_pod_the_node_is_named_after_the_pod() -> None:
    settings = WorkerSettings(queue="OasisLMF-PiWind-1", pod_name="piwind-7d9f-x2x4q")
    assert node_name(settings) == "OasisLMF-PiWind-1@piwind-7d9f-x2x4q"


def test_elsewhere_each_process_is_its_own_node() -> None:
    settings = WorkerSettings(queue="OasisLMF-PiWind-1")
    assert node_name(settings) == f"OasisLMF-PiWind-1.{os.getpid()}@{socket.gethostname()}"
