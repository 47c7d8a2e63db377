"""Where results go: every file beside a run's output, and the formats results are written in.

`open_output` returns the `OutputFiles` that own the output and the files beside it
(`files.py`); formats are plug-ins listed in `formats.py`, each writing through the
append-only journal of `journal.py`; record shapes are in `records.py`.
"""

from hfbatch.outputs.files import OutputFiles, OutputPaths, open_output
from hfbatch.outputs.formats import FORMATS, format_for
from hfbatch.outputs.records import error_record, result_record

__all__ = ["FORMATS", "OutputFiles", "OutputPaths", "error_record", "format_for", "open_output", "result_record"]
