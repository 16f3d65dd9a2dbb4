"""A user's recent-interest profile: the pages they saw lately, with exponential decay.

The same function updates the profile in the stream (per-user state), in a batch replay
and in the trainer's held-out evaluation, so the three agree on what a user "has seen".

* Each click adds 1 to its page's weight; every weight decays by half every
  ``half_life`` seconds of event time. Only the ``max_pages`` heaviest pages are kept.
* A click ``ttl`` seconds or more after the previous one starts a new profile (the
  state's expiry timer frees it; the check here makes expiry exact whatever the
  watermark). A click older than the profile (out of order) adds its weight without
  moving the profile's time backwards.
* What a user "just saw", excluded from their recommendations: the current page and
  the ``exclude_recent`` distinct pages seen before it (within the ttl).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

from transforms.base.errors import ConfigError

__all__ = ["DEFAULT_PROFILE", "Profile", "ProfileConfig", "Query", "query_of", "update_profile"]


class ProfileConfig(NamedTuple):
    """How profiles decay, how big they get, when they expire."""

    half_life: float = 300.0  # seconds of event time for a page's weight to halve
    max_pages: int = 20  # the heaviest pages kept
    ttl: float = 1800.0  # seconds without a click after which the profile is forgotten
    exclude_recent: int = 3  # previously seen pages excluded, besides the current one

    def validated(self) -> ProfileConfig:
        checks = (("--profile_half_life", self.half_life, "a number of seconds > 0", 0.0),
                  ("--profile_ttl", self.ttl, "a number of seconds > 0", 0.0))
        for flag, value, expected, floor in checks:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > floor:
                raise ConfigError(flag, expected, value)
        if isinstance(self.max_pages, bool) or not isinstance(self.max_pages, int) \
                or self.max_pages < 1:
            raise ConfigError("--profile_size", "a whole number >= 1", self.max_pages)
        if isinstance(self.exclude_recent, bool) or not isinstance(self.exclude_recent, int) \
                or self.exclude_recent < 0:
            raise ConfigError("--exclude_recent", "a whole number >= 0", self.exclude_recent)
        return self


DEFAULT_PROFILE = ProfileConfig()


class Profile(NamedTuple):
    """A user's profile as of their latest click."""

    weights: dict[str, float]  # page -> weight at ``as_of``
    recent: tuple[str, ...]  # distinct pages, most recent first (the current page first)
    as_of: float  # event time (epoch seconds) of the latest click


class Query(NamedTuple):
    """What the model is asked for one click: the profile and the pages to leave out."""

    pages: tuple[str, ...]
    weights: tuple[float, ...]
    exclude: tuple[str, ...]


def update_profile(profile: Optional[Profile], page: str, timestamp: float,
                   config: ProfileConfig = DEFAULT_PROFILE) -> Profile:
    """The profile after a click on ``page`` at ``timestamp`` (see the module docstring)."""
    if profile is None or timestamp - profile.as_of >= config.ttl:
        return Profile({page: 1.0}, (page,), timestamp)
    elapsed = timestamp - profile.as_of
    if elapsed > 0:
        factor = 0.5 ** (elapsed / config.half_life)
        weights = {p: w * factor for p, w in profile.weights.items()}
        as_of = timestamp
    else:  # out of order: no decay, and the profile's time stays
        weights = dict(profile.weights)
        as_of = profile.as_of
    weights[page] = weights.get(page, 0.0) + 1.0
    if len(weights) > config.max_pages:
        kept = sorted(weights.items(), key=lambda item: (-item[1], item[0]))[:config.max_pages]
        weights = dict(kept)
    recent = (page, *(p for p in profile.recent if p != page))[:config.exclude_recent + 1]
    return Profile(weights, recent, as_of)


def query_of(profile: Profile) -> Query:
    """The model's input for the profile's latest click."""
    pages = tuple(profile.weights)
    return Query(pages, tuple(profile.weights[p] for p in pages), profile.recent)
