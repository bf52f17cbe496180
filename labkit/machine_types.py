"""Compute Engine machine types: vCPU share, memory and an hourly price.

The local backend turns the vCPU share into a CPU quota and the memory into a
memory limit, so that an ``f1-micro`` server on a laptop is as small as the
handout's. Prices are on-demand us-central1 list prices as of ``PRICES_AS_OF`` (every
type, shared-core to 16 vCPU, so that a capacity plan can name the balancer it needs);
pass ``price_per_hour`` overrides to :func:`get` for other regions or dates.
"""

from __future__ import annotations

import dataclasses

from labkit.errors import ConfigError

PRICES_AS_OF = "2026-11-01"


@dataclasses.dataclass(frozen=True)
class MachineType:
    """One machine type: ``vcpu`` may be fractional (shared-core types)."""

    name: str
    vcpu: float
    memory_gb: float
    price_per_hour: float  # USD, on demand

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gb * 1024**3)


MACHINE_TYPES: dict[str, MachineType] = {
    m.name: m
    for m in [
        MachineType("f1-micro", 0.2, 0.6, 0.0076),
        MachineType("g1-small", 0.5, 1.7, 0.0257),
        MachineType("e2-micro", 0.25, 1.0, 0.00838),
        MachineType("e2-small", 0.5, 2.0, 0.01675),
        MachineType("e2-medium", 1.0, 4.0, 0.03351),
        MachineType("n1-standard-1", 1.0, 3.75, 0.0475),
        MachineType("e2-standard-2", 2.0, 8.0, 0.06701),
        # the larger types a capacity plan may name (design §5): up to 16 vCPU
        MachineType("e2-standard-4", 4.0, 16.0, 0.13402),
        MachineType("e2-standard-8", 8.0, 32.0, 0.26805),
        MachineType("e2-standard-16", 16.0, 64.0, 0.53609),
        MachineType("e2-highcpu-4", 4.0, 4.0, 0.09894),
        MachineType("e2-highcpu-8", 8.0, 8.0, 0.19788),
        MachineType("e2-highcpu-16", 16.0, 16.0, 0.39576),
        MachineType("n2-standard-2", 2.0, 8.0, 0.09712),
        MachineType("n2-standard-4", 4.0, 16.0, 0.19424),
        MachineType("n2-standard-8", 8.0, 32.0, 0.38847),
        MachineType("n2-standard-16", 16.0, 64.0, 0.77694),
        MachineType("n2-highcpu-2", 2.0, 2.0, 0.07170),
        MachineType("n2-highcpu-4", 4.0, 4.0, 0.14339),
        MachineType("n2-highcpu-8", 8.0, 8.0, 0.28678),
        MachineType("n2-highcpu-16", 16.0, 16.0, 0.57357),
    ]
}


def get(name: str, price_per_hour: float | None = None) -> MachineType:
    """Return the machine type called ``name``; a clear error lists the known ones."""
    try:
        mt = MACHINE_TYPES[name]
    except KeyError:
        raise ConfigError(
            f"unknown machine type {name!r}; known: {', '.join(MACHINE_TYPES)}"
        ) from None
    if price_per_hour is not None:
        mt = dataclasses.replace(mt, price_per_hour=price_per_hour)
    return mt
