"""pubsub connector (a package of small modules); public names are re-exported here."""

from transforms.io.pubsub.read import *  # noqa: F401,F403
