"""MLflow, written: the store and its layout (``store``: experiments, parent and child runs, tags), a pack's
one writer (``writer``: every lane's run, in bulk), MLflow's SQL store written in bulk (``sql``), the Parquet
history (``history``) and the disk spool that outlasts an unreachable server (``spool``). Imports no other
layer of ganlab; read back by ``ganlab.analysis``.

Public: ``resolve_tracking_uri``, ``StudyRun``, ``start_study_run``, ``PackWriter``, ``RunSpec``,
``sync_folder`` and the ``TAG_*`` names.
"""

from ganlab.track.writer import PackWriter, RunSpec
from ganlab.track.spool import Spool, sync_folder
from ganlab.track.store import (
    TAG_BEST,
    TAG_CONFIG_DIGEST,
    TAG_CONFIRMS,
    TAG_DEVICE,
    TAG_GIT_COMMIT,
    TAG_GPU_NAME,
    TAG_HISTORY,
    TAG_HOST,
    TAG_KIND,
    TAG_LOGGED_THROUGH,
    TAG_NODE_ID,
    TAG_NODE_IP,
    TAG_PACK,
    TAG_PACK_LANES,
    TAG_PARENT,
    TAG_PBT_EXPLOITS,
    TAG_PHASE,
    TAG_PID,
    TAG_PLATFORM,
    TAG_RESTARTS,
    TAG_RESUMED_AT,
    TAG_SEED,
    TAG_STATUS,
    TAG_STOP_REASON,
    TAG_STUDY,
    TAG_SWEPT,
    TAG_TRIAL_ID,
    TAG_TRIAL_NAME,
    TAG_VERDICT,
    TAG_VERDICT_REASON,
    TAG_VERSION,
    StudyRun,
    resolve_tracking_uri,
    start_study_run,
)

__all__ = ["PackWriter", "RunSpec", "Spool", "sync_folder", "StudyRun", "resolve_tracking_uri", "start_study_run", "TAG_BEST",
           "TAG_CONFIG_DIGEST", "TAG_CONFIRMS", "TAG_DEVICE", "TAG_GIT_COMMIT", "TAG_GPU_NAME", "TAG_HISTORY", "TAG_HOST",
           "TAG_KIND", "TAG_LOGGED_THROUGH", "TAG_NODE_ID", "TAG_NODE_IP", "TAG_PACK", "TAG_PACK_LANES",
           "TAG_PARENT", "TAG_PBT_EXPLOITS", "TAG_PHASE", "TAG_PID", "TAG_PLATFORM", "TAG_RESTARTS",
           "TAG_RESUMED_AT", "TAG_SEED", "TAG_STATUS", "TAG_STOP_REASON", "TAG_STUDY", "TAG_SWEPT", "TAG_TRIAL_ID",
           "TAG_TRIAL_NAME", "TAG_VERDICT", "TAG_VERDICT_REASON", "TAG_VERSION"]
