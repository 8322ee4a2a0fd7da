"""The bus: Kafka in distributed mode, an in-process log in embedded mode, one interface."""

from pipeline.bus.base import Bus, BusError, Consumer, Message, Producer

__all__ = ["Bus", "BusError", "Consumer", "Message", "Producer"]
