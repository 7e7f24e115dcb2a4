"""``with`` for the sandbox's servers and processes: stopped however the block ends."""

from __future__ import annotations

from typing import Self


class StopsOnExit:
    """``with obj:`` stops ``obj`` (:meth:`stop`) however the block ends."""

    def stop(self) -> object:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class StartsOnEnter(StopsOnExit):
    """``with obj:`` also starts ``obj`` (:meth:`start`) first."""

    def start(self) -> Self:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()
