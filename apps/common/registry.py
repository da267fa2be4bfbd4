"""A small typed registry: how a lower app learns of a higher one's work.

Apps are layers (DESIGN.md): an app imports only the apps below it. When a lower
app's work must reach a higher one (a merge must move segment memberships; an
erasure must delete events), the lower app offers a ``Registry`` and the higher
app fills it in its ``AppConfig.ready()``, as Django's ``admin.site.register``
does. The lower app then calls what is registered without importing it.

Contract of every registry:

- names are unique: registering a name twice raises ``RegistryError`` (two apps
  that chose one name, or a module imported twice under two names, would
  otherwise run the same work twice or lose one silently);
- entries come back in a deterministic order: by ``order`` (lower first), then
  by name, whatever the order apps were loaded in;
- what an entry is called with, in which transaction, and what its failure does
  is written in the docstring where each registry is made.

Tests add and remove entries through the ``registered`` fixture
(tests/conftest.py), so production code has no way to unregister.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar, overload

T = TypeVar("T")


class RegistryError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Registered(Generic[T]):
    name: str
    entry: T
    order: int


class Registry(Generic[T]):
    def __init__(self, label: str) -> None:
        self.label = label
        self._entries: dict[str, Registered[T]] = {}

    def __repr__(self) -> str:
        return f"<Registry {self.label}: {', '.join(self.names()) or 'empty'}>"

    @overload
    def register(self, name: str, entry: T, *, order: int = 0) -> T: ...

    @overload
    def register(self, name: str, *, order: int = 0) -> Callable[[T], T]: ...

    def register(
        self, name: str, entry: T | None = None, *, order: int = 0
    ) -> T | Callable[[T], T]:
        """Add ``entry`` under ``name``; without an entry, a decorator that adds
        what it decorates."""
        if entry is None:

            def decorator(decorated: T) -> T:
                self._add(name, decorated, order)
                return decorated

            return decorator
        self._add(name, entry, order)
        return entry

    def _add(self, name: str, entry: T, order: int) -> None:
        if not name:
            raise RegistryError(f"{self.label}: an entry needs a name.")
        if name in self._entries:
            raise RegistryError(
                f"{self.label}: {name!r} is registered already "
                f"({self._entries[name].entry!r}); names must be unique."
            )
        self._entries[name] = Registered(name=name, entry=entry, order=order)

    def items(self) -> list[Registered[T]]:
        """Every entry with its name and order, in the registry's order."""
        return sorted(self._entries.values(), key=lambda r: (r.order, r.name))

    def names(self) -> list[str]:
        return [r.name for r in self.items()]

    def __iter__(self) -> Iterator[T]:
        return iter([r.entry for r in self.items()])

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name].entry
        except KeyError:
            raise KeyError(f"{self.label}: nothing is registered as {name!r}") from None
