"""Arrow tables to pandas, the same whatever pyarrow's version."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

# pandas' default string dtype ("str"). pandas' own readers give it; pyarrow before 19 does not
# know it and gives object columns, and apache-beam 2.62 (pinned for its runners) holds pyarrow
# below 17. One conversion keeps frames from either path equal.
_STR = pd.StringDtype(na_value=np.nan)
_TYPES = {pa.string(): _STR, pa.large_string(): _STR}


def arrow_to_pandas(table: pa.Table) -> pd.DataFrame:
    """``table.to_pandas()``, with string columns as pandas' default string dtype."""
    return table.to_pandas(types_mapper=_TYPES.get)
