"""Strata's Optuna storage (imports Optuna: imported where a study is opened,
:func:`strata.training.study._storage`).

Optuna's RDB storage, whose trials asked for (``Study.ask``, so ``optimize``) are created with
their owner (:data:`~strata.training.study.ATTR_OWNER`: this process, host, PID and start
time) in the same transaction. Before, the objective recorded it as its first step: a
launcher killed between its ask and that step left a RUNNING trial without an owner, which a
resume cannot tell from another launcher's trial starting (so it counted it as claimed, and
the resumed study finished one trial short). Defined at module level so the storage pickles
as Optuna's does.
"""

from __future__ import annotations

from datetime import datetime

import optuna
from optuna.trial import FrozenTrial, TrialState

from strata.training.checkpoints import owner
from strata.training.study import ATTR_OWNER


class OwnedStorage(optuna.storages.RDBStorage):
    def _create_new_trial(
        self, study_id: int, template_trial: FrozenTrial | None = None
    ) -> FrozenTrial:
        if template_trial is None:  # asked for (with a template: enqueued or added)
            template_trial = FrozenTrial(
                number=-1,
                state=TrialState.RUNNING,
                value=None,
                datetime_start=datetime.now(),  # as Optuna stamps it: naive local time
                datetime_complete=None,
                params={},
                distributions={},
                user_attrs={ATTR_OWNER: owner()},
                system_attrs={},
                intermediate_values={},
                trial_id=-1,
            )
        return super()._create_new_trial(study_id, template_trial)
