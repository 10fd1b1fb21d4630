"""Environments: the one factory (`envs.make`) and the env families dlforge adds to Gymnasium."""

from envs.factory import find_spec, make

__all__ = ["find_spec", "make"]
