"""Studies read back for analysis, in pandas: the end of the data's path. ``frames`` (``load_study``,
``load_history``), ``tables`` (``stability_table``, ``compare``), ``figures`` and ``report`` (the HTML
report), ``trials`` (a trained trial's models: ``load_trial``, ``best_trial``). Reads MLflow through
``ganlab.track``; never imports ``ganlab.study`` (its peer) or ``ganlab.cli``.

Public: ``load_study``, ``load_history``, ``history_of``, ``study_runs``, ``stability_table``, ``compare``,
``verdicts_of``, ``wilson_interval``, ``ID_COLUMNS``, ``WINDOW``; ``StoreNotFound`` and ``StudyNotFound``
(both ``LookupError``) when there is nothing to read.
"""

from ganlab.analysis.frames import (
    ID_COLUMNS,
    WINDOW,
    WINDOWED,
    StoreNotFound,
    StudyNotFound,
    history_of,
    load_history,
    load_study,
    reading_client,
    study_runs,
)
from ganlab.analysis.tables import (
    CONFIDENCE,
    TABLE_METRICS,
    VERDICT_ORDER,
    compare,
    default_by,
    stability_table,
    verdicts_of,
    wilson_interval,
)

__all__ = ["load_study", "load_history", "history_of", "study_runs", "stability_table", "compare", "verdicts_of",
           "wilson_interval", "default_by", "StoreNotFound", "StudyNotFound", "reading_client", "ID_COLUMNS", "WINDOW", "WINDOWED", "VERDICT_ORDER", "TABLE_METRICS",
           "CONFIDENCE"]
