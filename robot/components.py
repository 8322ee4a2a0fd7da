"""The robot's process-wide parts, built once per process from the services."""

from __future__ import annotations

from pipeline.events import RobotRefused
from pipeline.services import Services
from robot.guard import Guard, policy_of
from robot.store import RobotStore, robot_store


def guard_of(services: Services) -> Guard:
    """The process's guard: policies and audit in the robot store, refusals on the bus."""

    def build() -> Guard:
        store: RobotStore = robot_store(services)
        producer = services.bus.producer()
        topic = services.topics.robot

        def publish(ev: RobotRefused) -> None:
            producer.send(topic, ev.key, ev.encode())
            producer.flush(5.0)

        return Guard(store, services.metrics, lambda t: policy_of(store, t), publish)

    return services.component("robot.guard", build)
