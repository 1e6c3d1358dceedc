"""Hand every element of a PCollection to one writer, exactly once, even when there are none."""

from __future__ import annotations

import apache_beam as beam


class GatherAll(beam.PTransform):
    """Calls ``fn.process(None, items)`` once with all of the input's elements as a list.

    A GroupByKey under one key would give nothing for an empty input, and its writer would
    never run: a batch of empty files would leave no dead-letter file and no counts. A
    one-element main input with the elements as a side input runs the writer exactly once.
    """

    def __init__(self, fn: beam.DoFn) -> None:
        super().__init__()
        self.fn = fn

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        return (
            pcoll.pipeline
            | "Once" >> beam.Create([None])
            | "Write" >> beam.ParDo(self.fn, beam.pvalue.AsList(pcoll))
        )
