"""Tabular inputs (PRS's TabularDataset): split delimited, JSON Lines and Parquet files into
record-aligned pieces of about ``mini_batch_size`` bytes, and read each as a pandas DataFrame whose
dtypes are the same in every mini-batch.

Pure library: sources of bytes (:mod:`.sources`), the format/piece vocabulary (:mod:`.formats`),
the dtype policy (:mod:`.schema`), the splitters (:mod:`.text`, :mod:`.parquet`), the entry points
(:mod:`.pieces`) and path partitions (:mod:`.partition`).
"""

from shared.scoring.tabular.formats import COLUMN_TYPES, FORMAT_NAMES, Piece, TabularDataError, TabularFormat
from shared.scoring.tabular.partition import parse_partition
from shared.scoring.tabular.pieces import infer_schema, needed_ranges, plan_pieces, read_piece
from shared.scoring.tabular.schema import Schema, pandas_dtype
from shared.scoring.tabular.sources import BlobSource, HeldSource, LocalFileSource, RangeSource, SourceFile

__all__ = ["COLUMN_TYPES", "FORMAT_NAMES", "BlobSource", "HeldSource", "LocalFileSource", "Piece", "RangeSource",
           "Schema", "SourceFile", "TabularDataError", "TabularFormat", "infer_schema", "needed_ranges",
           "pandas_dtype", "parse_partition", "plan_pieces", "read_piece"]
