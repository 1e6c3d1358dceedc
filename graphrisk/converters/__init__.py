"""Converters from public fraud data sets to v1 event files in the generator's layout."""

from graphrisk.converters.amlsim import convert_amlsim
from graphrisk.converters.report import ConversionReport
from graphrisk.converters.sffsd import convert_sffsd

__all__ = ["ConversionReport", "convert_amlsim", "convert_sffsd"]
