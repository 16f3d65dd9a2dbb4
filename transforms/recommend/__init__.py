"""Real-time recommendations: a model trained by a batch backfill, served in the stream.

* :mod:`~transforms.recommend.train`: :class:`TrainRecommender`, user events -> a new
  model version (sessions, co-visitation counts, fit, held-out evaluation, write).
* :mod:`~transforms.recommend.estimator`: the model, a scikit-learn compatible
  estimator (and its ONNX export).
* :mod:`~transforms.recommend.store`: the versioned model directory and its ``LATEST``.
* :mod:`~transforms.recommend.profile`: a user's decaying profile of recent pages.
* :mod:`~transforms.recommend.scoring`: profiles -> vectors -> top-k, and precision@k.
* :mod:`~transforms.recommend.handler`: the ``ModelHandler`` RunInference serves with.
* :mod:`~transforms.recommend.watch`: new versions announced while a stream runs.
* :mod:`~transforms.recommend.serve`: :class:`Recommend`, events -> recommendations.
* :mod:`~transforms.recommend.generate`: events with planted "A then B" structure.

The numerical parts (scipy, scikit-learn's loaders in Beam, ONNX Runtime) come with the
``[ml]`` extra and are imported when used. docs/recommendations.md has the design.
"""

from transforms.recommend.estimator import CoVisitationRecommender, to_onnx
from transforms.recommend.generate import PlantedEvents
from transforms.recommend.handler import MODEL_FORMATS, RecommenderModelHandler, load_version
from transforms.recommend.profile import Profile, ProfileConfig, Query, update_profile
from transforms.recommend.records import Recommendation, ScoredPage, TrainedModel
from transforms.recommend.serve import Click, ModelSource, Profiles, Recommend
from transforms.recommend.train import TrainConfig, TrainRecommender
from transforms.recommend.watch import WatchModelVersions

__all__ = [
    "MODEL_FORMATS",
    "Click",
    "CoVisitationRecommender",
    "ModelSource",
    "PlantedEvents",
    "Profile",
    "ProfileConfig",
    "Profiles",
    "Query",
    "Recommend",
    "Recommendation",
    "RecommenderModelHandler",
    "ScoredPage",
    "TrainConfig",
    "TrainRecommender",
    "TrainedModel",
    "WatchModelVersions",
    "load_version",
    "to_onnx",
    "update_profile",
]
