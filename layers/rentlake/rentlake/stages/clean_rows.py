"""The clean rows the train and explore stages read: a few columns of each committed file, one at a time.

The review, the training sample and the exploration sample read the clean zone file by file and keep only
what they need (a batch's prices, a hash sample), so their memory is bounded by what they keep, not by the
lake. A file is
read whole from the lake (:meth:`rentlake.lake.Lake.get_bytes`) and only the wanted columns are decoded;
the district is decoded as a dictionary (a few distinct strings), which costs a byte or two a row instead
of a Python string's ~60.

Columns a file lacks are skipped (an older batch without district or date, a test's minimal batch). When
a file has no ``row_hash`` (written before the clean stage stored it), the columns a row's identity is
hashed from are read too (:func:`rentlake.model.sample.row_identity`).
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd

from rentlake.lake import Lake
from rentlake.model.sample import IDENTITY_COLUMNS
from rentlake.records import CleanCommit

#: The columns training reads: the model's inputs, the split's date and each row's identity.
TRAIN_COLUMNS = ("rent_eur", "surface_m2", "district", "listed_at", "row_hash")


def read_file(
    lake: Lake, key: str, columns: Sequence[str], *, dictionary: Sequence[str] = ("district",)
) -> pd.DataFrame:
    """The wanted columns of one clean Parquet file (those it has), plus what its rows' identity needs.

    Parameters
    ----------
    lake
        The lake.
    key
        A clean file a commit lists.
    columns
        Wanted columns; ``row_hash`` among them brings the identity columns when the file has no
        ``row_hash``.
    dictionary
        Columns of few distinct strings, decoded as dictionaries (a quarantine file's ``reasons`` too).

    Returns
    -------
    pandas.DataFrame
        The ``dictionary`` columns (``district``) as pandas Categoricals; other columns as pyarrow
        converts them.
    """
    import pyarrow.parquet as pq

    data = io.BytesIO(lake.get_bytes(key))
    names = set(pq.read_schema(data).names)
    wanted = list(columns)
    if "row_hash" in wanted and "row_hash" not in names:
        wanted += [c for c in IDENTITY_COLUMNS if c not in wanted]
    present = [c for c in dict.fromkeys(wanted) if c in names]
    source = pq.ParquetFile(data, read_dictionary=[c for c in dictionary if c in present])
    return source.read(columns=present, use_threads=False).to_pandas()


def commit_frames(lake: Lake, commit: CleanCommit, columns: Sequence[str]) -> Iterator[pd.DataFrame]:
    """:func:`read_file` of each clean file of a commit, in order."""
    for key in lake.committed_files(commit, "clean"):
        yield read_file(lake, key, columns)


def group_labels(df: pd.DataFrame) -> np.ndarray:
    """Each row's district as a string, missing (or no district column) as the empty string."""
    if "district" not in df.columns:
        return np.full(len(df), "", dtype=object)
    col = df["district"]
    if isinstance(col.dtype, pd.CategoricalDtype):
        # Via the codes: the few categories are turned into strings once, not once a row.
        labels = np.array([str(c) for c in col.cat.categories] + [""], dtype=object)
        return labels[col.cat.codes.to_numpy()]  # code -1 (missing) picks the trailing ""
    return col.astype("object").where(col.notna(), "").astype(str).to_numpy(dtype=object)


def batch_rows(lake: Lake, commit: CleanCommit, columns: Sequence[str] = TRAIN_COLUMNS) -> pd.DataFrame:
    """Every clean row of one batch (the wanted columns), district as strings, tagged with its batch."""
    frames = [f for f in commit_frames(lake, commit, columns) if len(f)]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(columns))
    if "district" in df.columns:
        df["district"] = df["district"].astype("string")
    df["ingestion_id"] = commit.ingestion_id
    return df
