"""Every coefficient the carbon accounting uses, with its public source.

The method is the Cloud Carbon Footprint (CCF) one: average watts per vCPU =
min + utilisation × (max − min); memory 0.000392 kWh per GB-hour; GPUs the
same way as vCPUs with per-GPU idle and full-load watts; facility energy = IT
energy × PUE; CO2e = facility energy × grid intensity.  `docs/carbon.md`
explains the method and repeats this table.

Sources (all read 2025; numbers copied, not fetched at run time):

- CCF methodology, Appendix I "Energy Coefficients" and "Power Usage
  Effectiveness": cloud-carbon-footprint/cloud-carbon-footprint,
  `microsite/docs/Methodology.md` (Apache-2.0).  Per-vCPU min/max watts when
  the CPU micro-architecture is unknown (AWS and Azure: the average over their
  micro-architectures; GCP: the median), memory kWh per GB-hour, PUE, and the
  50 % average utilisation of hyperscale servers (from the 2016 U.S. Data
  Center Energy Usage Report) used when utilisation is unknown.
- CCF methodology, Appendix III "GPUs and min/max watts" (idle and 100 %
  watts per GPU, from the Teads dataset and TechPowerUp).
- CCF embodied emissions (`microsite/docs/EmbodiedEmissions.md`): the SCI
  formula M = TE × (time reserved / expected lifespan) × (resources reserved /
  total resources), lifespan 4 years; TE for an AWS m5 host (1610.79 kgCO2e,
  96 vCPUs in its largest size) from cloud-carbon-footprint/
  cloud-carbon-coefficients, `output/coefficients-aws-embodied.csv`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

#: Hours in an average month (365.25 × 24 / 12).
HOURS_PER_MONTH = Decimal("730.5")
#: Days in an average month (365.25 / 12).
DAYS_PER_MONTH = Decimal("30.4375")
#: Days per budget period; a budget is compared per month.
PERIOD_DAYS: dict[str, Decimal] = {
    "day": Decimal(1),
    "week": Decimal(7),
    "month": DAYS_PER_MONTH,
    "year": Decimal("365.25"),
}

#: CCF memory coefficient: kWh per GB-hour (0.392 W per GB).
MEMORY_KWH_PER_GB_HOUR = Decimal("0.000392")
#: CCF fallback CPU utilisation when none is known (hyperscale average, 2020).
DEFAULT_UTILISATION = Decimal("0.5")
#: Batch jobs without a declared energy are estimated at full load for their
#: whole run, as the examples in `policies/` do.
JOB_UTILISATION = Decimal(1)
#: Bytes in the GB of the CCF memory coefficient (decimal gigabytes).
BYTES_PER_GB = Decimal(10) ** 9


@dataclass(frozen=True)
class Provider:
    """Per-vCPU watts and PUE of one cloud when the micro-architecture is unknown."""

    name: str
    min_watts: Decimal
    max_watts: Decimal
    pue: Decimal


#: CCF Methodology Appendix I; PUE from its "Power Usage Effectiveness" section.
PROVIDERS: dict[str, Provider] = {
    "aws": Provider("aws", Decimal("0.74"), Decimal("3.5"), Decimal("1.135")),
    "gcp": Provider("gcp", Decimal("0.71"), Decimal("4.26"), Decimal("1.1")),
    "azure": Provider("azure", Decimal("0.78"), Decimal("3.76"), Decimal("1.185")),
}


@dataclass(frozen=True)
class Gpu:
    name: str
    idle_watts: Decimal
    max_watts: Decimal


#: CCF Methodology Appendix III.  The IR does not name GPU models; a GPU is
#: priced as an NVIDIA A10G (the GPU of the flagship policy's pools).
DEFAULT_GPU = Gpu("NVIDIA A10G", Decimal(18), Decimal(153))


@dataclass(frozen=True)
class Embodied:
    """SCI / CCF embodied emissions for compute: TE × (hours / lifespan) × (vCPUs / host vCPUs)."""

    host_kg: Decimal = Decimal("1610.79")  # AWS m5 family total (CCF coefficients)
    host_vcpus: int = 96  # m5.24xlarge / m5.metal
    lifespan_hours: Decimal = Decimal(4 * 8766)  # 4 years of 365.25 days

    def kg_per_vcpu_hour(self) -> Decimal:
        return self.host_kg / self.lifespan_hours / self.host_vcpus


_AWS = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d+$")  # eu-north-1, us-gov-west-1
_GCP = re.compile(r"^[a-z]+-[a-z]+\d+$")  # europe-north1, us-east4


def provider_of(region: str) -> Provider:
    """The cloud a region name belongs to, by its naming scheme; AWS when unsure.

    AWS names are `eu-north-1`, Google Cloud names `europe-north1`, Azure names
    `swedencentral` or `Sweden Central`.
    """
    if _AWS.match(region):
        return PROVIDERS["aws"]
    if _GCP.match(region):
        return PROVIDERS["gcp"]
    if re.fullmatch(r"[A-Za-z0-9 ]+", region) and "-" not in region:
        return PROVIDERS["azure"]
    return PROVIDERS["aws"]


def watts_per_vcpu(provider: Provider, utilisation: Decimal) -> Decimal:
    return provider.min_watts + utilisation * (provider.max_watts - provider.min_watts)


def watts_per_gpu(gpu: Gpu, utilisation: Decimal) -> Decimal:
    return gpu.idle_watts + utilisation * (gpu.max_watts - gpu.idle_watts)


def it_watts(
    region: str,
    cpu: Decimal | None,
    memory: int | None,
    gpu: int,
    utilisation: Decimal,
) -> Decimal:
    """CCF average IT power of one replica (vCPUs, memory, GPUs) in watts."""
    provider = provider_of(region)
    watts = (cpu or Decimal(0)) * watts_per_vcpu(provider, utilisation)
    watts += Decimal(memory or 0) / BYTES_PER_GB * MEMORY_KWH_PER_GB_HOUR * 1000
    watts += gpu * watts_per_gpu(DEFAULT_GPU, utilisation)
    return watts
