"""A study on Ray Tune: phases that start or resume (``runner``), Ray's Tuner (``tuner``), the search space,
searchers and schedulers (``search``), the trainable that runs one trial in a warm worker (``trainable``,
with its ``artifacts``), printed progress (``progress``) and the confirmation phase (``confirm``). Imports
``config``, ``diagnose``, ``train`` and ``track``; never ``analysis`` (its peer) or ``cli``.

Public: ``run_phase``, ``PhaseState``, ``ResumeRefused``, ``check_objectives``, ``confirmation_points``.
"""
