"""kafka connector (a package of small modules); public names are re-exported here."""

from transforms.io.kafka.read import *  # noqa: F401,F403
